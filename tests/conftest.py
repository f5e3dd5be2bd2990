import os

# Tests never reach a model hub: everything they load is bundled or built from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import llmasos_widgets as lw  # noqa: E402

TINY = ("tiny-llama", "tiny-gpt2", "tiny-bert")


@pytest.fixture(scope="session", params=TINY)
def tiny(request):
    return lw.load_model(request.param)


@pytest.fixture(scope="session")
def smollm2():
    return lw.load_model("smollm2-135m")


def eager_outputs(model, ids):
    """The model's own forward with eager attention and output_attentions=True: the reference."""
    previous = model.model.config._attn_implementation
    model.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model.model(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    finally:
        model.model.set_attn_implementation(previous)
