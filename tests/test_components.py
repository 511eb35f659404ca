"""Direct logit attribution, activation patching, attention rollout and flow, each checked
against the model run by hand (hooks and weight slices written here), networkx's maximum
flow and a rollout worked out on paper."""

import networkx as nx
import numpy as np
import pytest
import torch

from lm_layers_explainer import lm_layers_explainer as E
from lm_layers_explainer import load_model
from lm_layers_explainer.attention_flow import flow, rollout, with_residual

TEXT = "The cat sat on the mat and the dog"
CLEAN, CORRUPTED = "The cat sat on the mat", "The dog is in the mat"


def tiny_llama():
    """A random Llama with grouped-query attention (4 query heads, 2 key/value heads) and
    rotary positions, with the tiny GPT-2 tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_model("tiny-gpt2").tokenizer
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        attn_implementation="eager",
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        for module in model.modules():  # random weights of a useful size
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.3)
    return load_model((model, tokenizer))


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def lm(request):
    return load_model("tiny-gpt2") if request.param == "tiny-gpt2" else tiny_llama()


# --------------------------------------------------------------------------- by hand


def _logits(lm, text):
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return lm.model(input_ids=ids).logits[0, -1].double()


def _hand_split(lm, text, target, foil):
    """Per-head, per-MLP and embedding shares of the logit difference, computed with hooks
    and the weights' own slices: (embeddings, heads (layers, heads), mlp (layers,))."""
    model, config = lm.model, lm.config
    n_heads = (
        config.num_attention_heads if hasattr(config, "num_attention_heads") else config.n_head
    )
    hidden = config.hidden_size if hasattr(config, "hidden_size") else config.n_embd
    size = hidden // n_heads
    gpt2 = config.model_type == "gpt2"
    blocks = model.transformer.h if gpt2 else model.model.layers
    seen = {}
    hooks = []
    for k, block in enumerate(blocks):
        proj = block.attn.c_proj if gpt2 else block.self_attn.o_proj
        hooks.append(
            proj.register_forward_pre_hook(
                lambda m, a, k=k: seen.__setitem__(("z", k), a[0][0, -1].double())
            )
        )
        hooks.append(
            block.mlp.register_forward_hook(
                lambda m, a, o, k=k: seen.__setitem__(("mlp", k), o[0, -1].double())
            )
        )
    hooks.append(
        blocks[0].register_forward_pre_hook(
            lambda m, a, kw: seen.__setitem__(
                "embed", (a[0] if a else kw["hidden_states"])[0, -1].double()
            ),
            with_kwargs=True,
        )
    )
    norm = model.transformer.ln_f if gpt2 else model.model.norm
    hooks.append(norm.register_forward_pre_hook(
        lambda m, a: seen.__setitem__("r", a[0][0, -1].double())))  # fmt: skip
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    r = seen["r"]
    w = norm.weight.detach().double()
    if gpt2:  # LayerNorm: centre, divide by the standard deviation
        scale = 1 / torch.sqrt(r.var(unbiased=False) + norm.eps)

        def through(c):
            return w * scale * (c - c.mean())
    else:  # RMSNorm
        scale = 1 / torch.sqrt(r.pow(2).mean() + norm.variance_epsilon)

        def through(c):
            return w * scale * c

    unembed = model.lm_head.weight.detach().double()
    u = unembed[target] - unembed[foil]
    heads = np.zeros((len(blocks), n_heads))
    for k, block in enumerate(blocks):
        z = seen[("z", k)]
        proj = block.attn.c_proj if gpt2 else block.self_attn.o_proj
        weight = proj.weight.detach().double()
        for h in range(n_heads):
            part = z[h * size : (h + 1) * size]
            if gpt2:  # Conv1D: x @ W, W is (in, out)
                written = part @ weight[h * size : (h + 1) * size]
            else:  # Linear: W x, W is (out, in)
                written = weight[:, h * size : (h + 1) * size] @ part
            heads[k, h] = float(through(written) @ u)
    mlp = np.array([float(through(seen[("mlp", k)]) @ u) for k in range(len(blocks))])
    return float(through(seen["embed"]) @ u), heads, mlp


# --------------------------------------------------------------------------- logit attribution


def test_logit_attribution_sums_to_the_models_logit(lm):
    result = E["logit_attribution"](lm, TEXT)()
    logits = _logits(lm, TEXT)
    assert result.target == int(logits.argmax())
    assert result.logit == pytest.approx(float(logits.max()), abs=1e-5)
    assert abs(result.total - float(logits.max())) < 1e-4
    contrast = E["logit_attribution"](lm, TEXT)(target=" the", foil=" a")
    the, a = lm.tokenizer(" the")["input_ids"][0], lm.tokenizer(" a")["input_ids"][0]
    assert abs(contrast.total - float(logits[the] - logits[a])) < 1e-4


def test_logit_attribution_per_head_equals_weight_slices_by_hand(lm):
    the, a = lm.tokenizer(" the")["input_ids"][0], lm.tokenizer(" a")["input_ids"][0]
    result = E["logit_attribution"](lm, TEXT)(target=the, foil=a)
    embeddings, heads, mlp = _hand_split(lm, TEXT, the, a)
    assert np.abs(heads).max() > 1e-3  # the heads write something worth comparing
    np.testing.assert_allclose(result.heads, heads, atol=1e-6)
    np.testing.assert_allclose(result.mlp, mlp, atol=1e-6)
    assert result.embeddings == pytest.approx(embeddings, abs=1e-6)
    np.testing.assert_allclose(result.attention, result.heads.sum(1) + result.attention_bias)


@pytest.mark.slow
def test_logit_attribution_sums_on_smollm2():
    text = "The Eiffel Tower is in the city of"
    lm = load_model("SmolLM2-135M-Instruct")
    result = E["logit_attribution"](lm, text)(target=" Paris", foil=" Rome")
    logits = _logits(lm, text)
    paris, rome = (
        lm.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Paris", " Rome")
    )
    assert result.heads.shape == (30, 9)
    assert abs(result.total - float(logits[paris] - logits[rome])) < 1e-4
    assert abs(result.logit - float(logits[paris] - logits[rome])) < 1e-4


def test_logit_attribution_view_frame_and_json(tmp_path):
    from lm_layers_explainer.saving import load_result

    result = E["logit_attribution"]("tiny-gpt2", TEXT)(target=" the")
    frame = result.to_frame()
    assert frame["contribution"].sum() == pytest.approx(result.total)
    assert len(frame[frame.component == "head"]) == result.heads.size
    html = result.to_html()
    assert "h1" in html and "layer&nbsp;1" in html and "sum to" in html
    loaded = load_result(result.save(tmp_path / "dla.json"))
    np.testing.assert_array_equal(loaded.heads, result.heads)
    result.save(tmp_path / "dla.png")


def test_logit_attribution_refuses_a_model_it_cannot_split():
    with pytest.raises(ValueError, match="causal LM for logit_attribution"):
        E["logit_attribution"]("tiny-bert", "the cat")


# --------------------------------------------------------------------------- patching


def _run_with(lm, text, module, edit, pre=False):
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    if pre:
        handle = module.register_forward_pre_hook(edit, with_kwargs=True)
    else:
        handle = module.register_forward_hook(edit)
    try:
        with torch.no_grad():
            return lm.model(input_ids=ids).logits[0, -1].double()
    finally:
        handle.remove()


def _capture(lm, text, module, pre=False):
    seen = {}

    def keep(m, a, kw_or_o, *rest):
        if pre:
            seen["x"] = (a[0] if a else kw_or_o["hidden_states"]).clone()
        else:
            seen["x"] = (kw_or_o[0] if isinstance(kw_or_o, tuple) else kw_or_o).clone()

    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    handle = (module.register_forward_pre_hook(keep, with_kwargs=True) if pre
              else module.register_forward_hook(keep))  # fmt: skip
    with torch.no_grad():
        lm.model(input_ids=ids)
    handle.remove()
    return seen["x"]


def test_patching_everything_restores_clean_and_nothing_leaves_corrupted(lm):
    patch = E["patching"](lm, CLEAN, CORRUPTED)
    clean, corrupted = _logits(lm, CLEAN), _logits(lm, CORRUPTED)
    target = int(clean.argmax())
    foil = (
        int(corrupted.argmax()) if int(corrupted.argmax()) != target else int(clean.argsort()[-2])
    )
    result = patch(target=target, foil=foil, over="residual", positions="all")
    assert result.clean_value == pytest.approx(float(clean[target] - clean[foil]), abs=1e-5)
    # the unpatched row of the batch is the corrupted run as the model gives it alone
    assert result.corrupted_value == pytest.approx(
        float(corrupted[target] - corrupted[foil]), abs=1e-5
    )
    np.testing.assert_allclose(result.scores, 1.0, atol=1e-5)
    # the whole clean stream at layer 1, written into the corrupted run by hand: clean logits
    block = lm.layers[1]
    stream = _capture(lm, CLEAN, block, pre=True)

    def put(m, args, kwargs):
        if args:
            return (stream, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": stream}

    np.testing.assert_allclose(_run_with(lm, CORRUPTED, block, put, pre=True), clean, atol=1e-5)


@pytest.mark.parametrize("over", ["residual", "attention", "mlp", "heads"])
def test_patching_cells_equal_single_patches_by_hand(lm, over):
    patch = E["patching"](lm, CLEAN, CORRUPTED)
    clean, corrupted = _logits(lm, CLEAN), _logits(lm, CORRUPTED)
    target = int(clean.argmax())
    result = patch(target=target, over=over, batch_size=5)  # batches cut between layers
    gpt2 = lm.config.model_type == "gpt2"
    layer = 1
    block = lm.layers[layer]
    proj = block.attn.c_proj if gpt2 else block.self_attn.o_proj
    d_clean, d_corrupted = float(clean[target]), float(corrupted[target])
    columns = range(result.scores.shape[1])
    for column in columns:
        if over == "residual":
            source = _capture(lm, CLEAN, block, pre=True)

            def edit(m, args, kwargs, p=column, source=source):
                x = (args[0] if args else kwargs["hidden_states"]).clone()
                x[:, p] = source[:, p]
                return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

            patched = _run_with(lm, CORRUPTED, block, edit, pre=True)
        elif over == "heads":
            z = {"z": _capture(lm, CLEAN, proj, pre=True)}  # the heads side by side
            size = z["z"].shape[-1] // result.scores.shape[1]

            def edit(m, args, kwargs, h=column, z=z, size=size):
                x = args[0].clone()
                x[..., h * size : (h + 1) * size] = z["z"][..., h * size : (h + 1) * size]
                return (x, *args[1:]), kwargs

            patched = _run_with(lm, CORRUPTED, proj, edit, pre=True)
        else:
            module = proj if over == "attention" else block.mlp
            source = _capture(lm, CLEAN, module)

            def edit(m, a, output, p=column, source=source):
                x = output.clone()
                x[:, p] = source[:, p]
                return x

            patched = _run_with(lm, CORRUPTED, module, edit)
        expected = (float(patched[target]) - d_corrupted) / (d_clean - d_corrupted)
        assert result.scores[layer, column] == pytest.approx(expected, abs=1e-4), column


def test_patching_a_token_both_texts_share_at_the_embeddings_changes_nothing():
    # layer 0's stream is the token (and position) embedding: where both texts have the same
    # token, the patch writes what is already there; the first position sees only itself
    result = E["patching"]("tiny-gpt2", CLEAN, CORRUPTED)(over="residual")
    assert result.scores.shape == (2, 6)
    pairs = zip(result.clean_tokens, result.corrupted_tokens, strict=True)
    same = [t for t, (a, b) in enumerate(pairs) if a == b]
    assert same == [0, 4, 5]
    # zero up to float noise, which on another CPU kernel reaches 5e-6 (batched rows round
    # differently); a wrong patch moves these by tenths
    np.testing.assert_allclose(result.scores[0, same], 0, atol=2e-5)
    np.testing.assert_allclose(result.scores[:, 0], 0, atol=2e-5)
    assert result.columns[1] == "1: cat/ dog"
    assert "corrupted" in result.to_html() and result.to_frame().shape == (12, 3)


# --------------------------------------------------------------------------- rollout and flow


def test_rollout_equals_the_paper_rule_worked_by_hand():
    attention = np.array([[[1.0, 0.0], [0.5, 0.5]], [[1.0, 0.0], [0.2, 0.8]]])
    # with the residual: [[1, 0], [0.25, 0.75]] and [[1, 0], [0.1, 0.9]]; their product:
    expected = np.array([[1.0, 0.0], [0.1 + 0.9 * 0.25, 0.9 * 0.75]])
    rolled = rollout(attention)
    np.testing.assert_allclose(rolled[0], [[1.0, 0.0], [0.25, 0.75]])
    np.testing.assert_allclose(rolled[1], expected)


def _networkx_flow(attention, position):
    mixed = with_residual(attention)
    n_layers, n = mixed.shape[:2]
    graph = nx.DiGraph()
    for layer in range(n_layers):
        for i in range(n):
            for j in range(n):
                if mixed[layer, i, j] > 0:
                    graph.add_edge((layer, j), (layer + 1, i), capacity=mixed[layer, i, j])
    return np.array([
        [nx.maximum_flow_value(graph, (0, j), (layer + 1, position)) for j in range(n)]
        for layer in range(n_layers)
    ])  # fmt: skip


def test_flow_equals_networkx_maximum_flow():
    rng = np.random.default_rng(0)
    attention = rng.random((3, 5, 5)) * np.tril(np.ones((5, 5)))  # causal
    attention /= attention.sum(-1, keepdims=True)
    np.testing.assert_allclose(flow(attention, 4), _networkx_flow(attention, 4), atol=1e-6)
    np.testing.assert_allclose(flow(attention, 2), _networkx_flow(attention, 2), atol=1e-6)
    # one layer: the flow from j into i is capped by the one edge j -> i
    np.testing.assert_allclose(
        flow(attention[:1], 4)[0], with_residual(attention[:1])[0, 4], atol=1e-6
    )


def test_attention_flow_reads_the_models_own_attention(lm):
    explain = E["attention_flow"](lm, TEXT)
    ids = lm.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        own = lm.model(input_ids=ids, output_attentions=True).attentions
    mean = np.stack([a[0].double().mean(0).numpy() for a in own])
    raw = explain(method="raw")
    np.testing.assert_allclose(raw.scores, mean[:, -1], atol=1e-6)
    np.testing.assert_allclose(explain(method="rollout").scores, rollout(mean)[:, -1], atol=1e-6)
    flowed = explain(method="flow", position=3)
    assert flowed.position == 3
    np.testing.assert_allclose(flowed.scores, _networkx_flow(mean, 3), atol=1e-6)
    assert np.allclose(explain(method="rollout").scores.sum(1), 1)  # shares of the position


def test_attention_flows_old_name_relevance_still_reads_its_scores_with_a_warning():
    """Every attribution-like result calls its values ``scores`` (issue 28); the old name
    keeps working for one release."""
    result = E["attention_flow"]("tiny-gpt2", TEXT)(method="raw")
    with pytest.warns(DeprecationWarning, match=r"relevance is now \.scores"):
        old = result.relevance
    assert old is result.scores


def test_rollout_faithfulness_deletes_its_top_token_first():
    explain = E["attention_flow"]("tiny-gpt2", TEXT)
    result = explain(method="rollout")
    attribution = result.as_attribution()
    np.testing.assert_array_equal(attribution.scores, result.scores[-1])
    faith = result.faithfulness()
    lm = load_model("tiny-gpt2")
    ids = lm.tokenizer(TEXT)["input_ids"]
    top = int(np.argmax(result.scores[-1]))
    kept = [t for i, t in enumerate(ids) if i != top]
    with torch.no_grad():
        probs = lm.model(input_ids=torch.tensor([kept])).logits[0, -1].softmax(-1)
    assert faith.deletion[0] == pytest.approx(attribution.output, abs=1e-6)
    assert faith.deletion[1] == pytest.approx(float(probs[attribution.target]), abs=1e-6)
    assert faith.method == "attention_rollout"


def test_flow_refuses_long_texts_before_any_model_work(monkeypatch):
    import lm_layers_explainer.attention_flow as module

    monkeypatch.setattr(module, "FLOW_MAX_TOKENS", 4)
    explain = E["attention_flow"]("tiny-gpt2", TEXT)
    with pytest.raises(ValueError, match=r"method='flow' takes texts of at most 4 tokens"):
        explain(method="flow")
    assert explain._attention is None


def _nnsight_patching(lm, cells, target):
    """nnsight's own patching loop (its interventions, not our hooks): the clean stream each
    block reads, put at one position of the corrupted run, one invoke per cell."""
    from nnsight import LanguageModel

    wrapped = LanguageModel(lm.model, tokenizer=lm.tokenizer)
    blocks = wrapped.transformer.h if lm.config.model_type == "gpt2" else wrapped.model.layers
    clean_ids = lm.tokenizer(CLEAN, return_tensors="pt")["input_ids"]
    bad_ids = lm.tokenizer(CORRUPTED, return_tensors="pt")["input_ids"]
    clean, saved = [], []  # nnsight writes back to names that exist before its trace
    with torch.no_grad():
        with wrapped.trace(clean_ids):
            for block in blocks:
                clean.append(block.inputs[0][0].save())
        with wrapped.trace() as tracer:
            for layer, position in cells:
                with tracer.invoke(bad_ids):
                    blocks[layer].inputs[0][0][:, position] = clean[layer][:, position]
                    saved.append(wrapped.lm_head.output[0, -1].save())
    return np.array([float(logits[target]) for logits in saved])


@pytest.mark.filterwarnings("ignore:LanguageModel is deprecated")  # nnsight 0.8's own notice
def test_patching_equals_nnsight(lm):
    pytest.importorskip("nnsight")
    target = int(_logits(lm, CLEAN).argmax())
    result = E["patching"](lm, CLEAN, CORRUPTED)(target=target, over="residual")
    cells = [(layer, p) for layer in range(lm.n_layers) for p in range(len(result.columns))]
    values = _nnsight_patching(lm, cells, target)
    expected = (values - result.corrupted_value) / (result.clean_value - result.corrupted_value)
    # batched and single runs round differently: 1e-5 apart under ATEN_CPU_CAPABILITY=default
    np.testing.assert_allclose(result.scores.ravel(), expected, rtol=1e-4, atol=2e-5)
