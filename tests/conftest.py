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


# -- every run of a model holds its lock (llmasos_widgets/hooks.py) ------------------------------
# A forward pre-hook on every module of every process-wide torch call: when a loaded model's module
# runs on behalf of the package (a frame of llmasos_widgets is on the stack) without its lock held
# by that thread, the test that ran it fails. Tests' own reference computations (the model called
# directly, captum on it) are not the package's and are left alone.
import sys  # noqa: E402
import threading  # noqa: E402
import weakref  # noqa: E402
from pathlib import Path  # noqa: E402

_PACKAGE = str(Path(lw.__file__).parent)
_OWNER: "weakref.WeakKeyDictionary[torch.nn.Module, lw.LanguageModel]" = weakref.WeakKeyDictionary()
_UNLOCKED: list[str] = []
_init = lw.LanguageModel.__init__


def _registering_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    for module in self.model.modules():
        _OWNER[module] = self


def _check_lock(module, args):
    owner = _OWNER.get(module)
    if owner is None or owner.lock.held():
        return
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            where = f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"
            _UNLOCKED.append(
                f"{where}: {owner.name}'s modules ran without its lock on {threading.current_thread().name}"
            )
            return
        frame = frame.f_back


lw.LanguageModel.__init__ = _registering_init
torch.nn.modules.module.register_module_forward_pre_hook(_check_lock)


@pytest.fixture(autouse=True)
def _runs_hold_the_model_lock():
    _UNLOCKED.clear()
    yield
    found = sorted(set(_UNLOCKED))
    _UNLOCKED.clear()
    assert not found, "a model ran without its lock:\n" + "\n".join(found[:10])
