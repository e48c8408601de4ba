"""Classification as instruction following for causal LMs: the label is the answer.

Training text is the prompt followed by the label; evaluation is the accuracy of the *constrained*
answer: every label is scored by the log-likelihood of its tokens after the prompt, and the best
one is the prediction. A free-running ``generate()`` could answer anything; scoring only the
allowed answers measures what the adapter learnt, as lm-eval-harness does for multiple choice.

The prompt is a ``Template`` (``adapterhub.eval_protocol``): its text, the cut of the article to
``max_chars`` characters and the choice not to wrap it in the tokenizer's chat template are part of
every protocol that scores this way, so the figures can be re-made from the card alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adapterhub.compose.workflows.data import Dataset, load_examples
from adapterhub.compose.workflows.evaluate import classification_metrics, label_ids
from adapterhub.eval_protocol import Template
from adapterhub.vocab import LM

NEWS_TOPIC = Template("Classify the topic of this news article as one of: {choices}.\nArticle: {text}\nTopic:",
                      max_chars=400)


def as_instructions(dataset: Dataset, labels: Sequence[str], template: Template = NEWS_TOPIC) -> Dataset:
    """The LM training set: each example's prompt followed by its label."""
    rows = [{"text": f"{template.render(e.text, list(labels))}{template.answer_prefix}{e.label}"}
            for e in dataset.examples]
    return load_examples(rows, LM.name, name=f"{dataset.name} (as instructions)")


def _pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return ids, mask


@torch.inference_mode()
def constrained_answers(model, tokenizer, dataset: Dataset, labels: Sequence[str], template: Template = NEWS_TOPIC,
                        batch_size: int = 16, max_length: int | None = None, on_batch=None) -> dict:
    """Accuracy, macro-F1 and confusion matrix of the most likely allowed answer (the summed log-prob of
    the label's tokens after the prompt). Right padding, so each row's positions do not depend on its
    batch; a prompt longer than ``max_length`` minus the answer loses its *start* (the question stays)."""
    if template.chat_template:
        raise NotImplementedError("chat-template prompts are not supported by constrained-answer scoring yet")
    labels = list(labels)
    label_tokens = [tokenizer(template.answer_prefix + label, add_special_tokens=False)["input_ids"]
                    for label in labels]
    y_true = label_ids(dataset, labels)
    device = next(model.parameters()).device
    pairs = [(i, j) for i in range(len(dataset)) for j in range(len(labels))]
    scores = torch.full((len(dataset), len(labels)), float("-inf"))
    pad = tokenizer.pad_token_id or 0
    prompts: dict[int, list[int]] = {}
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        seqs = []
        for i, j in chunk:
            if i not in prompts:
                prompts[i] = tokenizer(template.render(dataset.examples[i].text, labels))["input_ids"]
            prompt = prompts[i]
            if max_length is not None and len(prompt) + len(label_tokens[j]) > max_length:
                prompt = prompt[len(prompt) + len(label_tokens[j]) - max_length:]
            seqs.append((prompt, label_tokens[j]))
        ids, mask = _pad([p + a for p, a in seqs], pad)
        logprobs = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        for row, ((i, j), (prompt, answer)) in enumerate(zip(chunk, seqs, strict=True)):
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(answer))
            scores[i, j] = float(logprobs[row, positions, torch.tensor(answer)].double().sum())
        if on_batch is not None:
            on_batch(len({i for i, _ in chunk}))
    metrics, matrix = classification_metrics(y_true, scores.argmax(dim=1).tolist(), len(labels))
    return {"metrics": metrics, "confusion_matrix": matrix}


__all__ = ["NEWS_TOPIC", "as_instructions", "constrained_answers"]
