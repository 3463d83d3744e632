"""The volumetric figure: capsule rasteriser (area, shading, texture carried by the part, depth order), the
pinhole projection, 3D arm kinematics and the body's own motion."""
import numpy as np
import pytest

from masnn.datasets.synth.figure import Look, render
from masnn.datasets.synth.motions import (
    Body,
    Idle,
    Placement,
    body_motion,
    front_skeleton,
    gesture_pose,
    random_style,
    reach,
)
from masnn.datasets.synth.raster import draw_capsules, smooth_texture

FLAT = np.ones((1, 8, 4), np.float32)


def capsule_image(a, b, ra, rb, albedo=1.0, light=(0.0, 0.0, -1.0), ambient=1.0, textures=FLAT, size=64, texels=1.0, shift=0.0):
    image = np.zeros((size, size), np.float32)
    draw_capsules(image, np.array([[a, b]], float), np.array([[ra, rb]], float), np.array([albedo]),
                  np.array([0]), textures, np.array([texels]), np.array([shift]), np.array(light, float), ambient)
    return image


def test_capsule_covers_its_analytic_area():
    # a stadium of radius r around a segment of length L covers pi r^2 + 2 r L pixels; anti-aliasing spreads
    # the edge over one pixel but keeps the total coverage
    image = capsule_image((20.3, 30.1), (44.7, 33.6), 6.0, 6.0)
    length = np.hypot(44.7 - 20.3, 33.6 - 30.1)
    assert image.sum() == pytest.approx(np.pi * 36 + 2 * 6 * length, rel=0.02)
    assert image.max() == pytest.approx(1.0)


def test_lambert_shading_of_a_cylinder():
    # light from the camera: the axis faces it (shade 1), the rim turns away; light from the right: right half brighter
    front = capsule_image((32, 10), (32, 50), 8.0, 8.0, ambient=0.0)
    assert front[30, 32] == pytest.approx(1.0, abs=1e-6)
    x = 32 + 6  # 6 of 8 pixels off the axis: n_z = -sqrt(1 - (6/8)^2)
    assert front[30, x] == pytest.approx(np.sqrt(1 - (6 / 8) ** 2), abs=1e-5)
    side = capsule_image((32, 10), (32, 50), 8.0, 8.0, light=(1.0, 0.0, 0.0), ambient=0.2)
    assert side[30, 38] > side[30, 35] > side[30, 33] > side[30, 32]
    assert side[30, 32] == side[30, 28] == pytest.approx(0.2, abs=1e-6)  # facing away or edge-on: the ambient floor


def test_texture_moves_with_the_part():
    texture = smooth_texture(np.random.default_rng(0), (48, 12), 0.3, 1.0)[None]
    first = capsule_image((20, 12), (20, 40), 5.0, 4.0, textures=texture)
    moved = capsule_image((27, 15), (27, 43), 5.0, 4.0, textures=texture)
    np.testing.assert_allclose(moved[15:50, 15:40], first[12:47, 8:33], atol=1e-6)
    assert np.std(first[20:35, 18:23]) > 0.02  # the texture shows inside the part, not only at its edge


def test_a_texture_shift_slides_the_pattern_along_the_axis():
    texture = smooth_texture(np.random.default_rng(1), (48, 12), 0.3, 1.0)[None]
    slid = capsule_image((20, 12), (20, 40), 5.0, 5.0, textures=texture, shift=3.0)
    rolled = capsule_image((20, 12), (20, 40), 5.0, 5.0, textures=np.roll(texture, -3, axis=1))
    np.testing.assert_allclose(slid, rolled, atol=1e-6)
    assert np.abs(slid - capsule_image((20, 12), (20, 40), 5.0, 5.0, textures=texture)).max() > 0.05


def test_cloth_folds_slide_with_the_limbs_slope_not_on_a_level_limb():
    background = np.full((128, 128), 0.3, np.float32)
    look = Look.random(np.random.default_rng(4), clothing=0.1, skin=0.7, trousers=0.2)
    look = Look(**{**vars(look), "long_sleeves": True})
    fixed = Look(**{**vars(look), "fold_slide": 0.0})
    hanging = front_skeleton(Body())
    level = dict(hanging, elbow_r=hanging["shoulder_r"] + [-0.19, 0.0, 0.0], wrist_r=hanging["shoulder_r"] + [-0.34, 0.0, 0.0])
    placement = Placement(64, 110, 150)

    def sleeve_change(joints):
        return np.abs(render(background, joints, placement, look) - render(background, joints, placement, fixed))

    hanging_arm = (slice(75, 120), slice(30, 50))  # the right arm below the shoulder (46, 70) on screen
    level_arm = (slice(62, 78), slice(0, 36))  # the same arm held out level, left of the shoulder
    assert sleeve_change(hanging)[hanging_arm].max() > 0.005  # the hanging arm's folds have sagged
    assert sleeve_change(level)[level_arm].max() < 1e-6
    assert np.abs(render(background, level, placement, look)[level_arm] - 0.3).max() > 0.01  # the arm is there


def test_parts_are_drawn_in_the_given_order():
    image = np.zeros((32, 32), np.float32)
    ends = np.array([[(8, 16), (24, 16)], [(16, 4), (16, 28)]], float)
    draw_capsules(image, ends, np.full((2, 2), 3.0), np.array([0.2, 0.9]), np.zeros(2, np.int64), FLAT,
                  np.ones(2), np.zeros(2), np.array([0.0, 0.0, -1.0]), 1.0)
    assert image[16, 16] == pytest.approx(0.9)  # the second (nearer) part covers the first where they cross
    assert image[16, 9] == pytest.approx(0.2)


def test_projection_is_a_pinhole_camera():
    placement = Placement(70.0, 100.0, 150.0, distance=2.0, centre=(64.0, 64.0))
    at_pelvis_depth = placement.to_pixels({"a": np.array([0.1, -0.2, 0.0])})["a"]
    np.testing.assert_allclose(at_pelvis_depth, [70 + 15, 100 - 30])
    nearer = placement.to_pixels({"a": np.array([0.1, -0.2, -0.5])})["a"]
    # a point half a body height nearer, at 1.5 instead of 2.0: offsets from the image centre grow by 2 / 1.5
    np.testing.assert_allclose(nearer - 64, (at_pelvis_depth - 64) * 2.0 / 1.5)
    assert placement.scale(-0.5) == pytest.approx(150 * 2.0 / 1.5)


@pytest.mark.parametrize("target", [(0.1, 0.2, -0.15), (-0.25, -0.1, -0.1), (0.0, 0.33, 0.0)])
def test_arm_kinematics_keep_the_bones_and_reach_the_hand(target):
    shoulder = np.array([-0.12, -0.27, 0.0])
    goal = shoulder + np.array(target)
    elbow, wrist = reach(shoulder, goal, 0.17, 0.16, np.array([-0.6, 1.0, 0.5]))
    assert np.linalg.norm(elbow - shoulder) == pytest.approx(0.17)
    assert np.linalg.norm(wrist - elbow) == pytest.approx(0.16)
    if np.linalg.norm(np.array(target)) < 0.33:
        np.testing.assert_allclose(wrist, goal, atol=1e-9)


def test_clapping_hands_meet_in_front_of_the_chest():
    body = Body()
    style = random_style(0, np.random.default_rng(2))
    for t in np.linspace(0, 1, 9):
        joints = gesture_pose(0, t, style, body)
        for side in ("r", "l"):
            assert joints[f"wrist_{side}"][2] < -0.1  # towards the camera
            assert joints["pelvis"][1] > joints[f"wrist_{side}"][1] > joints["neck"][1]


def test_a_clap_moves_the_forearms_not_the_upper_arms():
    body = Body()
    style = random_style(0, np.random.default_rng(5))
    poses = [gesture_pose(0, t, style, body) for t in np.linspace(0, 2 / style.frequency, 41)]
    for side in ("r", "l"):
        elbows = np.array([p[f"elbow_{side}"] for p in poses])
        wrists = np.array([p[f"wrist_{side}"] for p in poses])
        np.testing.assert_allclose(np.linalg.norm(wrists - elbows, axis=1), body.forearm)
        assert np.ptp(elbows, axis=0).max() < 1e-9  # before the body's own sway, which gesture_pose leaves out
        assert np.ptp(wrists[:, 0]) > 0.02  # the hands open and close
    gaps = [p["wrist_l"][0] - p["wrist_r"][0] for p in poses]
    assert min(gaps) < 0.04 < max(gaps)  # they meet, and part


def test_the_body_moves_under_the_arms_without_changing_the_input():
    body = Body()
    joints = front_skeleton(body)
    before = {k: v.copy() for k, v in joints.items()}
    idle = Idle.random(np.random.default_rng(3))
    moved = [body_motion(joints, t, idle) for t in np.linspace(0, 4, 40)]
    for name in joints:
        np.testing.assert_array_equal(joints[name], before[name])
    heads = np.array([m["head"] for m in moved])
    assert np.ptp(heads[:, 0]) > 0.002  # the head sways
    raised = dict(joints, wrist_r=joints["shoulder_r"] + [0.0, -0.3, 0.0])
    lifted = body_motion(raised, 0.0, idle)
    still = body_motion(joints, 0.0, idle)
    assert lifted["shoulder_r"][1] < still["shoulder_r"][1]  # a raised arm lifts its shoulder


def test_render_draws_the_figure_over_the_background_and_leaves_it_alone():
    background = np.full((128, 128), 0.3, np.float32)
    look = Look.random(np.random.default_rng(4), clothing=0.1, skin=0.7, trousers=0.2)
    image = render(background, front_skeleton(Body()), Placement(64, 110, 150), look)
    assert np.all(background == np.float32(0.3))
    changed = np.abs(image - 0.3) > 1e-4
    assert 0.05 < changed.mean() < 0.6
    assert changed[110 - 60, 64]  # the head, 0.385 body heights above the pelvis
    assert not changed[5, 5]
