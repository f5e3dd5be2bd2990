"""Load a GGUF file tensor by tensor into the target dtype: never a float32 copy of the whole model.

transformers' own GGUF path dequantises every tensor into one dict and then builds the model from it:
twice the weights at the peak, four times a bfloat16 model's size when it is asked for float32 (a 7B
GGUF would need 28 GB). Here the model is made on the meta device, and each tensor of the file is
dequantised (in float32, that tensor alone), put in transformers' layout by transformers' own tensor
processor (llama.cpp permutes the query and key rows of Llama's attention; Gemma stores norms plus 1) and
copied into its parameter in the target dtype. The file's names are mapped with transformers' own
``get_gguf_hf_weights_map``, so every architecture transformers reads from GGUF is read the same here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_gguf_pytorch_utils import (
    TENSOR_PROCESSORS,
    TensorProcessor,
    get_gguf_hf_weights_map,
    load_gguf_checkpoint,
)

from .meta import empty_model, materialise
from .progress import tqdm


def load_gguf(path: str | Path, dtype: torch.dtype) -> PreTrainedModel:
    """The causal LM of a GGUF file, its weights dequantised one tensor at a time into ``dtype``.

    Peak memory: the model in ``dtype`` plus the largest tensor in float32.

    Examples
    --------
    >>> from llmasos_widgets.core.models import bundled_path
    >>> model = load_gguf(bundled_path("smollm2-135m"), torch.bfloat16)  # doctest: +SKIP
    >>> # (about 50 s on 2 cores)
    >>> model.model.layers[0].self_attn.q_proj.weight.dtype  # doctest: +SKIP
    torch.bfloat16

    """
    from gguf import GGUFReader, dequantize

    path = Path(path)
    # The config as transformers parses it (read once: the metadata holds the whole vocabulary); the
    # tokenizer's part is dropped at once.
    parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    parsed.pop("tokenizer", None)
    fields = dict(parsed["config"])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = empty_model(config, dtype)
    materialise(model, dtype, init=False)
    reader = GGUFReader(str(path))
    architecture = str(reader.fields["general.architecture"].contents())
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])
    names = get_gguf_hf_weights_map(model, processor)
    params = dict(model.named_parameters(remove_duplicate=False))
    filled: set[str] = set()
    with torch.no_grad():
        for tensor in tqdm(reader.tensors, desc=f"Dequantizing {path.name} tensor by tensor", unit="tensor"):
            weights = dequantize(tensor.data, tensor.tensor_type)  # float32, this tensor only
            result = processor.process(
                weights=weights, name=tensor.name, tensor_key_mapping=names, parsed_parameters=parsed
            )
            hf_name = names.get(result.name)
            if hf_name is None or hf_name not in params:
                continue  # a tensor transformers does not read either (e.g. precomputed rope frequencies)
            param = params[hf_name]
            if tuple(param.shape) != tuple(result.weights.shape):
                raise ValueError(
                    f"{path.name}: tensor {tensor.name} has shape {tuple(result.weights.shape)}, "
                    f"but {hf_name} is {tuple(param.shape)}"
                )
            param.copy_(torch.from_numpy(np.ascontiguousarray(result.weights)))
            filled.add(hf_name)
    tied = {n for n, p in params.items() if any(p is params[f] for f in filled)}
    missing = sorted(set(params) - filled - tied)
    if missing:
        raise ValueError(f"{path.name} holds no tensor for {len(missing)} parameters, e.g. {', '.join(missing[:3])}")
    return model
