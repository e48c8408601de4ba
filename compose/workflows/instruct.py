"""Classification as instruction following for causal LMs: the label is the answer.

Training text is the prompt followed by the label; evaluation is the accuracy of the *constrained*
answer: every label is scored by the log-likelihood of its tokens after the prompt, and the best
one is the prediction. A free-running ``generate()`` could answer anything; scoring only the
allowed answers measures what the adapter learnt, as lm-eval-harness does for multiple choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adapterhub.compose.workflows.data import Dataset, load_examples
from adapterhub.compose.workflows.evaluate import classification_metrics
from adapterhub.vocab import LM

TEMPLATE = "Classify the topic of this news article as one of: {choices}.\nArticle: {text}\nTopic:"


def prompt_for(text: str, labels: Sequence[str], max_chars: int = 400) -> str:
    return TEMPLATE.format(choices=", ".join(labels), text=text[:max_chars].strip())


def as_instructions(dataset: Dataset, labels: Sequence[str]) -> Dataset:
    """The LM training set: each example's prompt followed by its label."""
    rows = [{"text": f"{prompt_for(e.text, labels)} {e.label}"} for e in dataset.examples]
    return load_examples(rows, LM.name, name=f"{dataset.name} (as instructions)")


@torch.inference_mode()
def constrained_accuracy(model, tokenizer, dataset: Dataset, labels: Sequence[str], batch_size: int = 16) -> dict:
    """Accuracy and macro-F1 of the most likely allowed answer (sum of the label's token log-probs)."""
    label_tokens = [tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
    y_true, y_pred = [], []
    for example in dataset.examples:
        y_true.append(list(labels).index(example.label))
    pairs = [(i, j) for i in range(len(dataset)) for j in range(len(labels))]
    scores = torch.full((len(dataset), len(labels)), float("-inf"))
    tokenizer.padding_side = "right"
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        prompts = [tokenizer(prompt_for(dataset.examples[i].text, labels))["input_ids"] for i, _ in chunk]
        seqs = [p + label_tokens[j] for p, (_, j) in zip(prompts, chunk, strict=True)]
        width = max(len(s) for s in seqs)
        pad = tokenizer.pad_token_id or 0
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for row, ((i, j), prompt) in enumerate(zip(chunk, prompts, strict=True)):
            positions = range(len(prompt) - 1, len(prompt) - 1 + len(label_tokens[j]))
            scores[i, j] = sum(logprobs[row, pos, tok].item() for pos, tok in zip(positions, label_tokens[j], strict=True))
    y_pred = scores.argmax(dim=1).tolist()
    metrics, matrix = classification_metrics(y_true, y_pred, len(labels))
    return {"metrics": metrics, "confusion_matrix": matrix}
