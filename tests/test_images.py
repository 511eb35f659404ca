"""The image classification explainer, checked against the model run by hand, captum called
directly, transformers' image processor and its image-classification pipeline."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from lm_layers_explainer import clear_model_cache, lm_layers_explainer, load_model
from lm_layers_explainer.attributions import MethodNotApplicableError
from lm_layers_explainer.saving import load_result

E = lm_layers_explainer


def picture(height=40, width=56, seed=0):
    """A random RGB picture of another size than the model's (the processor resizes it)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def explain():
    return E["image_classification"]("tiny-vit", picture())


def probability_of(lm, label_index):
    """f written here: the label's softmax probability from the model's own logits."""

    def f(pixel_values):
        return lm.model(pixel_values=pixel_values).logits.softmax(-1)[:, label_index]

    return f


def test_the_model_sees_the_processors_pixels_and_the_view_shows_them(explain):
    lm = explain.lm
    image = Image.fromarray(picture())
    expected = lm.processor(image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(explain.pixel_values, expected)
    # un-normalized, the pixels are the processor's resized image (32 x 32)
    resized = np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR))
    assert explain.image.shape == (32, 32, 3)
    assert np.abs(explain.image.astype(int) - resized.astype(int)).max() <= 1
    # an image already of the model's size comes back as it was
    small = picture(32, 32, seed=3)
    assert np.array_equal(E["image_classification"]("tiny-vit", small).image, small)


def test_the_default_target_is_the_pipelines_top_label(explain):
    from transformers import pipeline

    lm = explain.lm
    top = pipeline("image-classification", model=lm.model, image_processor=lm.processor)(
        Image.fromarray(picture()), top_k=3
    )
    result = explain("saliency")
    assert result.target == top[0]["label"]
    assert result.value == pytest.approx(top[0]["score"], abs=1e-5)
    assert list(result.top_labels) == [row["label"] for row in top]


def test_integrated_gradients_equals_captum_on_the_model_and_is_complete(explain):
    from captum.attr import IntegratedGradients

    result = explain("integrated_gradients", target="dog", n_steps=20)
    f = probability_of(explain.lm, 1)
    x = explain.pixel_values
    expected, delta = IntegratedGradients(f).attribute(
        x, baselines=torch.zeros_like(x), n_steps=20, return_convergence_delta=True
    )
    np.testing.assert_allclose(result.scores, expected[0].sum(0).detach().numpy(), atol=1e-6)
    assert result.delta == pytest.approx(float(delta), abs=1e-6)
    with torch.no_grad():
        gap = float(f(x) - f(torch.zeros_like(x)))
    assert result.value - result.baseline_value == pytest.approx(gap, abs=1e-6)
    assert result.scores.sum() == pytest.approx(gap, abs=abs(result.delta) + 1e-5)
    # the patches partition the pixels
    assert result.to_frame()["attribution"].sum() == pytest.approx(result.scores.sum(), abs=1e-6)


def test_feature_ablation_gives_each_patch_its_drop_when_replaced_by_hand(explain):
    result = explain("feature_ablation", target="cat", baseline="black")
    f = probability_of(explain.lm, 0)
    x = explain.pixel_values
    black = explain.lm.processor(Image.new("RGB", (32, 32)), return_tensors="pt")["pixel_values"]
    frame = result.to_frame()
    assert len(frame) == 16  # 32 x 32 pixels in 8 x 8 patches
    with torch.no_grad():
        for row in frame.itertuples():
            changed = x.clone()
            window = (slice(None), slice(None), slice(row.top, row.top + 8),
                      slice(row.left, row.left + 8))  # fmt: skip
            changed[window] = black[window]
            assert row.attribution == pytest.approx(float(f(x) - f(changed)), abs=1e-6)
    # occlusion with a one-patch window is the same question
    occluded = explain("occlusion", target="cat", baseline="black")
    np.testing.assert_allclose(occluded.scores, result.scores, atol=1e-7)


def test_the_blur_baseline_is_the_processor_on_the_blurred_image(explain):
    result = explain("feature_ablation", target=2, baseline="blur")
    blurred = Image.fromarray(explain.image).filter(ImageFilter.GaussianBlur(2))
    pixels = explain.lm.processor(blurred, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = float(probability_of(explain.lm, 2)(pixels))
    assert result.baseline_value == pytest.approx(expected, abs=1e-5)


def test_a_noise_tunnel_equals_captums_with_the_same_seed(explain):
    from captum.attr import NoiseTunnel, Saliency

    result = explain("saliency", target="bird", noise_tunnel="smoothgrad", nt_samples=4, seed=7)
    f = probability_of(explain.lm, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        expected = NoiseTunnel(Saliency(f)).attribute(
            explain.pixel_values.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=4,
            stdevs=0.2, abs=True,
        )  # fmt: skip
    np.testing.assert_allclose(result.scores, expected[0].sum(0).detach().numpy(), rtol=1e-5)
    plain = explain("saliency", target="bird")
    assert not np.allclose(result.scores, plain.scores)  # the noise changed something
    vargrad = explain("integrated_gradients", noise_tunnel="vargrad", nt_samples=3, n_steps=5)
    assert (vargrad.scores >= 0).all()  # a variance per number, summed over channels


def test_logit_output_and_multi_label_sigmoid():
    lm = load_model("tiny-vit")
    explain = E["image_classification"](lm, picture())
    logits = explain.logits()
    assert explain("saliency", target=1, output="logit").value == pytest.approx(float(logits[1]))
    lm.config.problem_type = "multi_label_classification"
    try:
        value = explain("saliency", target=1).value
    finally:
        lm.config.problem_type = None
    assert value == pytest.approx(float(logits[1].sigmoid()), abs=1e-6)


def test_a_pixel_values_tensor_of_the_models_size_is_explained_as_given(explain):
    again = E["image_classification"]("tiny-vit", explain.pixel_values[0])
    a, b = explain("input_x_gradient"), again("input_x_gradient")
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-7)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            torch.zeros(1, 3, 224, 224),
            r"must be the model's size \(1, 3, 32, 32\); got \(1, 3, 224, 224\)",
        ),
        (np.zeros((32, 32, 2), np.uint8), r"\(height, width\) or \(height, width, 3 or 4\)"),
        (np.full((8, 8, 3), 2.0), r"float array must hold values in 0\.\.1"),
        (np.zeros((0, 5, 3), np.uint8), "at least one pixel"),
        (np.zeros((8, 8), np.int64), "must be uint8 or float"),
    ],
)
def test_bad_images_are_refused_with_what_is_valid(image, message):
    with pytest.raises(ValueError, match=message):
        E["image_classification"]("tiny-vit", image)


def test_grey_and_rgba_arrays_are_read_as_rgb():
    grey = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    explain = E["image_classification"]("tiny-vit", grey)
    assert explain.image.shape == (32, 32, 3)
    assert np.array_equal(explain.image[..., 0], explain.image[..., 2])
    rgba = np.dstack([picture(32, 32), np.zeros((32, 32), np.uint8)])
    assert np.array_equal(E["image_classification"]("tiny-vit", rgba).image, picture(32, 32))


def test_an_image_file_is_read(tmp_path):
    path = tmp_path / "picture.png"
    Image.fromarray(picture(32, 32)).save(path)
    assert np.array_equal(E["image_classification"]("tiny-vit", path).image, picture(32, 32))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="image must be a readable image file"):
        E["image_classification"]("tiny-vit", tmp_path / "bad.png")


def test_methods_without_a_faithful_reading_are_refused(explain):
    with pytest.raises(MethodNotApplicableError, match="nn.ReLU"):
        explain("guided_backprop")
    with pytest.raises(MethodNotApplicableError, match="random tokens"):
        explain("deeplift_shap")


def test_sampling_methods_run_on_patches_and_are_seeded(explain):
    a = explain("kernel_shap", n_samples=30, seed=1)
    b = explain("kernel_shap", n_samples=30, seed=1)
    np.testing.assert_array_equal(a.scores, b.scores)
    # every pixel of a patch has the same score
    patch = a.scores[:8, :8]
    assert np.allclose(patch, patch[0, 0])


def test_the_largest_occlusion_window_covers_every_pixel(explain):
    """window goes up to the patches that fit along the image's side: 4 of 8 pixels on
    tiny-vit's 32 x 32 input (one window, the whole image), 6 of 5 (the last step clipped
    at the edge, so the pixels past the last whole patch are covered too)."""
    whole = explain("occlusion", window=4, output="logit")
    assert np.ptp(whole.scores) == 0  # one window: every pixel gets its drop alike
    drop = whole.value - whole.baseline_value
    assert whole.scores[:8, :8].sum() == pytest.approx(drop, rel=1e-4)  # a patch's share
    clipped = explain("occlusion", window=6, patch_size=5, output="logit")
    assert np.isfinite(clipped.scores).all() and np.all(clipped.scores != 0)
    assert np.ptp(clipped.scores[30:, 30:]) == 0  # the partial patch: one feature


def test_views_save_and_come_back(explain, tmp_path):
    result = explain("integrated_gradients", n_steps=5)
    for view in ("overlay", "heatmap", "masked", "alpha"):
        figure = result.figure(view=view, resolution="patch")
        assert len(figure.axes) >= 2
    with pytest.raises(ValueError, match="sign must be positive, negative or absolute"):
        result.figure(view="masked", sign="all")
    with pytest.raises(ValueError, match="view must be one of overlay, heatmap, masked, alpha"):
        result.figure(view="contour")
    html = result.to_html()
    assert html.count("data:image/png;base64,") == 1 and "<script" not in html
    for suffix in ("html", "png", "svg", "json"):
        assert result.save(tmp_path / f"r.{suffix}").stat().st_size > 0
    back = load_result(tmp_path / "r.json")
    assert np.array_equal(back.image, result.image) and back.image.dtype == np.uint8
    np.testing.assert_array_equal(back.scores, result.scores)
    assert back.to_frame().equals(result.to_frame())


def test_an_image_classifier_loads_from_a_folder_with_its_image_processor(tmp_path):
    import json

    lm = load_model("tiny-vit")
    lm.model.save_pretrained(tmp_path)
    lm.processor.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.kind == "image_classifier"
    assert loaded.processor.size == {"height": 32, "width": 32}
    a = E["image_classification"](loaded, picture())("saliency")
    b = E["image_classification"](lm, picture())("saliency")
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-7)
    # an image processor of the checkpoint's own code is refused, as a tokenizer's is
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config["auto_map"] = {"AutoImageProcessor": "processing.MyProcessor"}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    clear_model_cache()
    with pytest.raises(ValueError, match=r"ships its own Python code \(auto_map in preprocessor"):
        load_model(str(tmp_path))


def test_custom_labels_name_an_image_classifiers_labels():
    renamed = E["image_classification"]("tiny-vit", picture(), custom_labels=["a", "b", "c"])
    plain = E["image_classification"]("tiny-vit", picture())
    a, b = renamed("saliency", target="c"), plain("saliency", target="bird")
    assert a.target == "c" and set(a.top_labels) == {"a", "b", "c"}
    np.testing.assert_array_equal(a.scores, b.scores)
    with pytest.raises(ValueError, match="custom_labels must name each of the model's 3 labels"):
        E["image_classification"]("tiny-vit", picture(), custom_labels=["a"])
