from html.parser import HTMLParser

import pytest

from lm_layers_explainer import lm_layers_explainer

HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(1)> {{7*7}}'


class _Collector(HTMLParser):
    """Element names, and the text of each token chip (its position label left out)."""

    def __init__(self):
        super().__init__()
        self.tags, self.chips, self._in_label = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_label = tag == "small"

    def handle_endtag(self, tag):
        self._in_label = False

    def handle_data(self, data):
        if self.tags and self.tags[-1] == "br" and not self._in_label:
            self.chips.append(data)


def test_byte_level_tokens_reassemble_the_text():
    result = lm_layers_explainer["tokens"]("tiny-gpt2")("The capital of France is Paris")
    assert "".join(result.tokens) == "The capital of France is Paris"
    assert result.positions == list(range(len(result)))
    assert not any(result.special)


def test_special_tokens_are_marked_and_frame_matches():
    result = lm_layers_explainer["tokens"]("tiny-bert")("The cat sat on the mat")
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    assert result.special[0] and result.special[-1] and not any(result.special[1:-1])
    frame = result.to_frame()
    assert list(frame.columns) == ["position", "token", "token_id", "special"]
    assert frame["token_id"].tolist() == result.token_ids
    tokenizer = lm_layers_explainer["tokens"]("tiny-bert").lm.tokenizer
    assert tokenizer.convert_tokens_to_ids(["cat"]) == [result.token_ids[2]]


def test_html_shows_hostile_text_only_as_text():
    result = lm_layers_explainer["tokens"]("tiny-gpt2")(HOSTILE)
    parser = _Collector()
    parser.feed(result._repr_html_())
    assert "script" not in parser.tags and "img" not in parser.tags
    assert len(parser.chips) == len(result)
    assert "".join(parser.chips).replace("\u2423", " ") == HOSTILE


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_save_writes_a_static_or_html_file(tmp_path, suffix):
    result = lm_layers_explainer["tokens"]("tiny-gpt2")("The cat sat")
    path = result.save(tmp_path / f"tokens{suffix}")
    data = path.read_bytes()
    assert len(data) > 200
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    elif suffix == ".svg":
        assert b"<svg" in data
    else:
        assert b"lmle-tokens" in data


def test_bad_inputs_are_refused():
    tokens = lm_layers_explainer["tokens"]("tiny-gpt2")
    with pytest.raises(ValueError, match="text must contain"):
        tokens("   ")
    with pytest.raises(TypeError, match="text must be a string"):
        tokens(["The", "cat"])
    with pytest.raises(ValueError, match="path must end in"):
        tokens("The cat").save("tokens.jpg")
