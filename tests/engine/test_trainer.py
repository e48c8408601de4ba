"""`transformers.Trainer` trains an adapter of an AdapterModel as it would any model."""

from __future__ import annotations

import torch
from transformers import Trainer, TrainingArguments

import adapterhub as ah
from tests.helpers.tiny import build


class PatternData(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        ids = torch.tensor([5, 6, 7, 8] * 4) + (i % 4) * 10
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def test_trainer_trains_only_the_adapter(tmp_path):
    model = ah.AdapterModel(build("llama-causal"))
    model.add_adapter("a", ah.LoRAConfig(r=4, alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]))
    model.train_adapter("a")
    base = {k: v.clone() for k, v in model.base_state_dict().items()}
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_train_epochs=4, learning_rate=3e-2,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=PatternData())
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] * 0.95, losses
    assert result.global_step == 16
    for key, value in model.base_state_dict().items():
        assert torch.equal(value, base[key]), key
    model.save_adapter("a", tmp_path / "a")
    assert (tmp_path / "a" / "adapter_model.safetensors").exists()
