"""One config per method (and variant), shared by the engine tests."""

from __future__ import annotations

import adapterhub as ah

METHOD_CASES = ("lora", "lora_fa", "ia3", "houlsby", "pfeiffer", "prompt", "prefix")


def method_config(case: str, arch: str, **kw):
    seq = {"task_type": "SEQ_CLS"} if arch.endswith("seqcls") else {"task_type": "CAUSAL_LM"}
    if case == "lora":
        return ah.LoRAConfig(r=4, alpha=8, **seq, **kw)
    if case == "lora_fa":
        return ah.LoRAConfig(r=4, alpha=8, lora_fa=True, **seq, **kw)
    if case == "ia3":
        return ah.IA3Config(**seq, **kw)
    if case == "houlsby":
        return ah.BottleneckConfig.preset("houlsby", reduction_factor=4, **seq, **kw)
    if case == "pfeiffer":
        return ah.BottleneckConfig.preset("pfeiffer", reduction_factor=4, **seq, **kw)
    if case == "prompt":
        return ah.PromptTuningConfig(num_virtual_tokens=4, **seq, **kw)
    if case == "prefix":
        return ah.PrefixTuningConfig(num_virtual_tokens=4, **seq, **kw)
    raise ValueError(case)
