"""Person masks: mediapipe on real faces, a tiny random SAM through every prompt mode, the face hull, the stage."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from factory import recipe as recipes
from factory.errors import ModelLoadError
from factory.faces import Face
from factory.sample import Sample
from factory.stages.segment import (
    FaceHullMasker, MediapipeMaskConfig, SamMaskConfig, SamMasker, SegmentConfig, SegmentStage, load_sam,
    load_sam_weights, soften,
)

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
FACES = ASSETS / "faces" / "deepface"


def tiny_sam(img_size: int = 64):
    """A SAM with the real architecture at toy width/depth, random weights (seeded)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim = 32
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=16, embed_dim=dim, depth=1, num_heads=2, out_chans=dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=2,
            global_attn_indexes=(0,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(img_size // 16, img_size // 16),
            input_image_size=(img_size, img_size), mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=1, iou_head_hidden_dim=16,
        ),
    )
    return sam.eval()


class FixedDetector:
    """A detector that always returns the same face (keeps SAM tests off mediapipe)."""

    def __init__(self, box):
        self.box = np.array(box, dtype=np.float64)

    def detect(self, image):
        return [Face(box=self.box, score=1.0)]


def sam_config(**fields) -> SamMaskConfig:
    return SamMaskConfig(kind="sam", checkpoint=Path("unused.pth"), **fields)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(80, 96, 3), dtype=np.uint8)


@pytest.mark.parametrize("fields", [
    {"prompt": "face"},
    {"prompt": "points", "points": [(0.5, 0.4), (0.1, 0.1)], "point_labels": [1, 0]},
    {"prompt": "boxes", "boxes": [(0.2, 0.2, 0.6, 0.9), (0.5, 0.1, 0.9, 0.5)]},
])
def test_sam_prompts_give_a_soft_mask_of_the_image_size(image, fields):
    masker = SamMasker(tiny_sam(), sam_config(**fields), detector=FixedDetector([30, 20, 60, 50]))
    mask = masker(image)
    assert mask.shape == image.shape[:2] and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    assert np.array_equal(mask, masker(image)), "the same prompt on the same image gives the same mask"


def test_sam_prompt_changes_the_mask(image):
    model = tiny_sam()
    left = SamMasker(model, sam_config(prompt="points", points=[(0.1, 0.1)]))(image)
    right = SamMasker(model, sam_config(prompt="points", points=[(0.9, 0.9)]))(image)
    assert not np.allclose(left, right)


def test_sam_face_prompt_without_a_face_is_empty(image):
    class NoFaces:
        def detect(self, image):
            return []

    mask = SamMasker(tiny_sam(), sam_config(prompt="face"), detector=NoFaces())(image)
    assert mask.shape == image.shape[:2] and mask.max() == 0.0


def test_sam_face_prompt_box_grows_and_opens_downwards():
    masker = SamMasker(tiny_sam(), sam_config(face_box_scale=2.0), detector=FixedDetector([40, 20, 60, 40]))
    prompt = masker._face_prompt(np.array([40.0, 20.0, 60.0, 40.0]), h=100, w=100)
    assert prompt["box"].tolist() == [30.0, 10.0, 70.0, 99.0]
    assert prompt["points"].tolist() == [[50.0, 30.0]]


def test_sam_automatic_mode_keeps_segments_in_the_subject_region(image):
    config = sam_config(prompt="auto", points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    mask = SamMasker(tiny_sam(), config, detector=FixedDetector([30, 20, 60, 50]))(image)
    assert mask.shape == image.shape[:2]
    assert set(np.unique(mask)) <= {0.0, 1.0}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_sam_weights_round_trip(tmp_path, image, suffix):
    source = tiny_sam()
    path = tmp_path / f"sam{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    torch.manual_seed(1)
    target = tiny_sam()
    target.image_encoder.neck[0].weight.data.normal_()
    load_sam_weights(target, path, "a tiny SAM")
    config = sam_config(prompt="points", points=[(0.5, 0.5)])
    assert np.array_equal(SamMasker(source, config)(image), SamMasker(target, config)(image))


def test_sam_wrong_or_missing_checkpoint_is_a_model_load_error(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"not_sam.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelLoadError, match="other.pth.*segment.mask.checkpoint"):
        load_sam_weights(tiny_sam(), bad, "segment.mask.checkpoint: a SAM vit_b state dict")
    with pytest.raises(ModelLoadError, match="missing.pth.*file not found"):
        load_sam(tmp_path / "missing.pth", "vit_b")


def test_recipe_segment_section_validates_with_yaml_paths():
    base = {"source": {"kind": "samples"}, "teacher": {"kind": "cartoonize"}}
    assert recipes.validate(base, "r.yaml").segment is None
    ok = recipes.validate({**base, "segment": {}}, "r.yaml")
    assert ok.segment.mask.kind == "mediapipe" and ok.segment.inpaint.kind == "opencv"
    with pytest.raises(recipes.RecipeError) as err:
        recipes.validate({**base, "segment": {"mask": {"kind": "sam", "checkpoint": "s.pth", "prompt": "boxes"},
                                             "inpaint": {"kind": "lama"}, "feather": 2}}, "r.yaml")
    text = str(err.value)
    assert "segment.mask: prompt `boxes` needs `boxes`" in text
    assert "segment.inpaint.checkpoint: Field required" in text
    assert "segment.feather" in text


def test_soften_feathers_a_hard_mask():
    hard = np.zeros((64, 64), np.float32)
    hard[16:48, 16:48] = 1.0
    soft = soften(hard, 0.05)
    assert soft[32, 32] > 0.95 and soft[0, 0] < 0.01
    edge = soft[32, 10:22]
    assert np.all(np.diff(edge) >= 0) and 0.2 < soft[32, 16] < 0.8, "a smooth ramp across the edge"


def test_segment_stage_sets_mask_meta_and_rejects_empty():
    def square(image):
        mask = np.zeros(image.shape[:2], np.float32)
        mask[8:40, 8:40] = 1.0
        return mask

    stage = SegmentStage(SegmentConfig(feather=0.0), backend=square)
    sample = Sample.create("a", 0, 0)
    sample.real = np.zeros((64, 64, 3), np.uint8)
    out = stage.process(sample)
    assert out.reject_reason is None and out.mask.dtype == np.uint8 and out.mask.shape == (64, 64)
    assert out.mask[20, 20] == 255 and out.mask[50, 50] == 0
    assert out.meta["segment"] == {"mask": "mediapipe", "side": "real", "coverage": 0.25, "feather": 0.0}

    empty = SegmentStage(SegmentConfig(), backend=lambda image: np.zeros(image.shape[:2], np.float32))
    toon_only = Sample.create("b", 1, 0)
    toon_only.toon = np.zeros((32, 32, 3), np.uint8)
    rejected = empty.process(toon_only)
    assert rejected.reject_reason == "segment_empty_mask" and rejected.meta["segment"]["side"] == "toon"


def test_face_hull_grows_and_shrinks():
    points = np.array([[30, 30], [70, 30], [70, 70], [30, 70]], dtype=np.float64)
    detector = FixedDetector([30, 30, 70, 70])
    detector.detect = lambda image: [Face(box=np.array([30, 30, 70, 70.0]), score=1.0, landmarks=points, scheme="x")]
    image = np.zeros((100, 100, 3), np.uint8)
    areas = [FaceHullMasker(grow, detector=detector)(image).sum() for grow in (-0.1, 0.0, 0.1)]
    assert areas[0] < areas[1] < areas[2]
    assert abs(areas[1] - 41 * 41) < 100


def _corner_and_face_coverage(mask, box):
    h, w = mask.shape
    x0, y0, x1, y1 = np.round(box).astype(int)
    ch, cw = h // 8, w // 8
    face = float(mask[y0:y1, x0:x1].mean())
    top = float(np.mean([mask[:ch, :cw].mean(), mask[:ch, -cw:].mean()]))
    return face, top


def real_portraits():
    from skimage import data

    images = [("astronaut", data.astronaut())]
    if FACES.is_dir():
        from factory.images import read_image

        images += [(p.name, read_image(p)) for p in sorted(FACES.glob("img*.jpg"))[:6]]
    return images


def test_mediapipe_masks_cover_faces_not_top_corners():
    """Evidence on real photos: the face box is inside the person mask, the top corners are not."""
    from factory.faces import shared_detector

    masker, detector = MediapipeMaskConfig().build(), shared_detector("mediapipe", 16)
    faces, corners = [], []
    for name, img in real_portraits():
        found = detector.detect(img)
        if not found:
            continue
        mask = soften(masker(img), 0.01)
        face, top = _corner_and_face_coverage(mask, found[0].box)
        faces.append(face)
        corners.append(top)
    if len(faces) < 2 and not FACES.is_dir():
        pytest.skip("../shared/assets/faces absent; only the astronaut was checked")
    assert np.median(faces) > 0.9, faces
    assert np.median(corners) < 0.1, corners


def test_mediapipe_is_per_image_not_temporal():
    from skimage import data

    masker = MediapipeMaskConfig().build()
    first = masker(data.astronaut())
    masker(np.full((512, 512, 3), 30, np.uint8))
    assert np.array_equal(first, masker(data.astronaut()))


def test_build_mask_from_a_name_or_mapping():
    from factory.errors import UserError
    from factory.stages.segment import MediapipeMasker, build_mask

    assert isinstance(build_mask("mediapipe"), MediapipeMasker)
    with pytest.raises(UserError, match="checkpoint"):
        build_mask({"kind": "sam"})
    with pytest.raises(UserError, match="mask backend"):
        build_mask("nope")
