"""Chat transcripts: messages rendered by the tokenizer's chat template, and what each token is in them.

``render`` finds where each message's content sits in the rendered text (exactly, by rendering the
messages once more with a placeholder for each content); ``tie`` then says of every token which
message and role it belongs to, whether the template wrote it, and which characters of its message's
own content it stands for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Characters for the placeholders that stand in for each message's content while the template is
# rendered (private use: a template has no reason to touch them); one absent from every content is used.
_MARKS = ("\ue000", "\uf8ff", "\U000f0000", "\U00100000")


@dataclass(frozen=True)
class Transcript:
    """Messages rendered by a chat template, and where each message's content sits in the text.

    ``contents[i]`` is ``(start, end, skip)``: message ``i``'s content is ``text[start:end]``, which is
    ``content[skip:skip + end - start]`` (a template that trims whitespace drops ``skip`` characters
    before it). ``frames[i]`` is where message ``i``'s part of the text begins: the template's text before
    its content (the role marker) is its; the frame after the last one, when there is one, is the
    generation prompt's (the answer's).
    """

    messages: tuple[dict[str, Any], ...]
    text: str
    contents: tuple[tuple[int, int, int], ...]
    frames: tuple[int, ...]
    generation_prompt: bool


@dataclass(frozen=True)
class ChatTokens:
    """What each token of a chat trace is: its message, that message's role, template or content, its characters.

    ``messages`` are the messages traced, and for a generation the answer as one more ``assistant``
    message (for a trace with ``add_generation_prompt``, an empty one: the opening of the answer to come).
    Per token: ``token_messages`` (the message's index), ``token_roles``, ``template`` (True for
    text the chat template wrote: role markers, ``<|im_start|>``, the newlines around them, a default system
    prompt, the end of a turn) and ``message_offsets``: ``[start, end]`` into its message's own
    ``content`` (``[0, 0]`` for a template token; ``[end, end]`` for a token carrying the rest of a split
    character, whose text is ``""``), so that ``messages[m]["content"][start:end]`` is the token's text.
    """

    messages: list[dict[str, Any]]
    token_messages: list[int]
    token_roles: list[str]
    template: list[bool]
    message_offsets: list[tuple[int, int]]


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """The messages as a list of dicts, or a ValueError naming what is wrong with them.

    Examples
    --------
    >>> check_messages([{"role": "user", "content": "你好"}])
    [{'role': 'user', 'content': '你好'}]
    >>> check_messages([{"role": "user"}])
    Traceback (most recent call last):
    ...
    ValueError: message 0 has no 'content': each message is {"role": "user", "content": "..."}

    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            'messages must be a non-empty list of {"role": ..., "content": ...} dicts, '
            f"got {type(messages).__name__ if messages else messages!r}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is a {type(message).__name__}, not a dict with 'role' and 'content'")
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f'message {i} has no {key!r}: each message is {{"role": "user", "content": "..."}}')
        if not isinstance(message["role"], str) or not message["role"].strip():
            raise ValueError(
                f"message {i}'s role must be a non-empty str (user, assistant, system), got {message['role']!r}"
            )
        if not isinstance(message["content"], str):
            raise ValueError(
                f"message {i}'s content must be a str, not {type(message['content']).__name__} "
                "(only text messages are traced)"
            )
    if not any(m["content"].strip() for m in messages):
        raise ValueError("every message is empty or only whitespace: give at least one visible character")
    return [dict(m) for m in messages]


def has_template(tokenizer: Any) -> bool:
    """Whether the tokenizer has a chat template to render messages with."""
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool, name: str) -> Transcript:
    r"""Render ``messages`` with the tokenizer's chat template and find each message's content in the text.

    The template runs once on the messages and once on placeholders for their contents: the text
    between two placeholders is the template's own, so each content is found where the template put it,
    even when it repeats a role name or another message. A template that trims a content is followed;
    one that changes it otherwise, drops it or repeats it is a ValueError (its tokens could not be tied
    to the message).

    Examples
    --------
    >>> from llmasos_widgets.core.tiny import tiny_model
    >>> import copy; tok = copy.deepcopy(tiny_model("tiny-gpt2")[1])
    >>> tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}\n{% endfor %}"
    >>> t = render(tok, [{"role": "user", "content": " user "}], add_generation_prompt=False, name="tiny")
    >>> t.text, t.contents, t.frames
    ('<user>user\n', ((6, 10, 1),), (0,))

    """
    if not has_template(tokenizer):
        raise ValueError(
            f"{name}: this tokenizer has no chat template; pass a plain string (model.trace('...')), or set "
            "tokenizer.chat_template (model.tokenizer.chat_template = '...', a Jinja template such as the "
            "instruct model's)"
        )
    messages = tuple(messages)
    everything = "".join(m["content"] for m in messages)
    mark = next((c for c in _MARKS if c not in everything), None)
    if mark is None:
        raise ValueError("the messages use every private-use character that marks a message while rendering")
    holders = [f"{mark}{i}{mark}" for i in range(len(messages))]
    placed = [{**m, "content": h} for m, h in zip(messages, holders, strict=True)]

    def apply(msgs: Sequence[dict[str, Any]], generation: bool) -> str:
        out = tokenizer.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=generation)
        if not isinstance(out, str):
            raise ValueError(f"{name}'s chat template rendered {type(out).__name__}, not a text")
        return out

    text = apply(messages, add_generation_prompt)
    skeleton = apply(placed, add_generation_prompt)
    at = []
    for i, holder in enumerate(holders):
        if skeleton.count(holder) != 1:
            what = "leaves out" if holder not in skeleton else "repeats"
            raise ValueError(f"{name}'s chat template {what} message {i}'s content, so its tokens cannot be tied to it")
        at.append(skeleton.index(holder))
    if at != sorted(at):
        raise ValueError(f"{name}'s chat template reorders the messages, so its tokens cannot be tied to them")
    # The template's own text: before the first content, between two, after the last.
    ends = [a + len(h) for a, h in zip(at, holders, strict=True)]
    pieces = [skeleton[: at[0]], *(skeleton[ends[i] : at[i + 1]] for i in range(len(at) - 1)), skeleton[ends[-1] :]]
    if not text.startswith(pieces[0]):
        raise ValueError(f"{name}'s chat template renders its text differently for other contents: cannot tie tokens")
    contents, pos = [], len(pieces[0])
    for i, message in enumerate(messages):
        content, after = message["content"], pieces[i + 1]
        lead = len(content) - len(content.lstrip())
        for shown, skip in ((content, 0), (content.strip(), lead), (content.lstrip(), lead), (content.rstrip(), 0)):
            if text.startswith(shown, pos) and text.startswith(after, pos + len(shown)):
                contents.append((pos, pos + len(shown), skip))
                pos += len(shown) + len(after)
                break
        else:
            raise ValueError(
                f"{name}'s chat template changes message {i}'s content (more than trimming its whitespace), "
                "so its tokens cannot be tied to it"
            )
    if pos != len(text):
        raise ValueError(f"{name}'s chat template renders its text differently for other contents: cannot tie tokens")

    # Where each message's part begins: where the transcript of the messages before it ends, when the
    # template renders that as the start of this one (otherwise at the previous content's end).
    def shift(skeleton_pos: int, upto: int) -> int:  # a position in the skeleton, after content `upto`
        return skeleton_pos + sum(contents[j][1] - contents[j][0] - len(holders[j]) for j in range(upto + 1))

    frames = [0]
    n_frames = len(messages) + (1 if add_generation_prompt else 0)
    for i in range(1, n_frames):
        boundary = contents[i - 1][1]
        try:
            before = apply(placed[:i], False)
        except Exception:  # a template may refuse a partial transcript (roles must alternate, say)
            before = None
        if before is not None and skeleton.startswith(before):
            if ends[i - 1] <= len(before) <= (at[i] if i < len(at) else len(skeleton)):
                boundary = shift(len(before), i - 1)
        frames.append(boundary)
    return Transcript(messages, text, tuple(contents), tuple(frames), add_generation_prompt)


def tie(
    transcript: Transcript,
    text: str,
    tokens: Sequence[str],
    token_ids: Sequence[int],
    generated: Sequence[bool],
    special_ids: set[int],
) -> ChatTokens:
    r"""Tie each token to its message: role, template or content, and its characters in the message's content.

    ``text`` is the transcript's text followed by the generated text, and ``tokens`` what each token
    stands for in it (``LanguageModel.token_texts``). Generated tokens are the answer, one more
    ``assistant`` message, up to the first special token the model generated (the end of its turn).

    Examples
    --------
    >>> t = Transcript(({"role": "user", "content": "Hi"},), "<u>Hi\n", ((3, 5, 0),), (0,), False)
    >>> c = tie(t, t.text, ["<u>", "Hi", "\n"], [7, 8, 9], [False] * 3, {7})
    >>> c.template, c.message_offsets
    ([True, False, True], [(0, 0), (0, 2), (0, 0)])

    """
    messages = [dict(m) for m in transcript.messages]
    regions = [(start, end, skip, i) for i, (start, end, skip) in enumerate(transcript.contents)]
    frames = list(transcript.frames)
    n_prompt = len(transcript.text)
    # The answer: the generated text up to the first special token the model generated.
    first_gen = next((i for i, g in enumerate(generated) if g), None)
    if first_gen is not None:
        if len(frames) == len(messages):  # generated without a generation prompt: the answer starts here
            frames.append(n_prompt)
        answer_end = n_prompt
        for i in range(first_gen, len(tokens)):
            if int(token_ids[i]) in special_ids:
                break
            answer_end += len(tokens[i])
        messages.append({"role": "assistant", "content": text[n_prompt:answer_end]})
        regions.append((n_prompt, answer_end, 0, len(messages) - 1))
    elif transcript.generation_prompt:  # the answer to come: its opening is the template's
        messages.append({"role": "assistant", "content": ""})

    def frame_of(pos: int) -> int:
        return max(i for i, f in enumerate(frames) if f <= pos)

    out_messages: list[int] = []
    template: list[bool] = []
    offsets: list[tuple[int, int]] = []
    cursor = 0
    for token in tokens:
        if token and text.startswith(token, cursor):
            start, end = cursor, cursor + len(token)
            cursor = end
        else:
            start = end = cursor  # a name with no characters (an added special token), or "" (rest of a character)
        region = next((r for r in regions if start < r[1] and end > r[0]), None)
        if region is not None:
            r_start, r_end, skip, m = region
            out_messages.append(m)
            template.append(False)
            offsets.append((max(start, r_start) - r_start + skip, min(end, r_end) - r_start + skip))
        elif token == "" and out_messages:  # carries the rest of the character the token before shows
            out_messages.append(out_messages[-1])
            template.append(template[-1])
            offsets.append((offsets[-1][1], offsets[-1][1]))
        else:
            out_messages.append(frame_of(start))
            template.append(True)
            offsets.append((0, 0))
    roles = [str(messages[m]["role"]) for m in out_messages]
    return ChatTokens(messages, out_messages, roles, template, offsets)
