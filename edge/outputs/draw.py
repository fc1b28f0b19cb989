"""Overlay drawing: skeletons, confidence-coloured keypoints, track IDs, an FPS badge, and analytics
(zone outlines, angle arcs, rep counters) when the result carries them.

Pure functions on an HxWx3 uint8 RGB numpy image, drawn with OpenCV, so the framebuffer,
the MJPEG stream and the window all show the same picture and golden-image tests can pin it.
Edges come from the model family (StreamMeta.edges); left/right limbs are told apart by the
keypoint names, so any family with ``left_*``/``right_*`` names gets coloured sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edge.types import Pose, PoseResult, StreamMeta

Color = tuple[int, int, int]  # RGB

LEFT: Color = (255, 140, 0)  # orange
RIGHT: Color = (0, 170, 255)  # sky blue
CENTER: Color = (235, 235, 235)
OUTLINE: Color = (20, 20, 20)
LABEL_BG: Color = (0, 0, 0)
LABEL_FG: Color = (255, 255, 255)
ZONE: Color = (255, 215, 0)  # gold: an empty zone
ZONE_BUSY: Color = (255, 40, 120)  # pink: someone is inside
ARC: Color = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class DrawStyle:
    """How to draw; sizes of None scale with the image (a 480-line frame gets 2 px lines)."""

    min_score: float = 0.2
    thickness: int | None = None
    radius: int | None = None
    ids: bool = True
    badge: bool = True

    @classmethod
    def of(cls, cfg) -> "DrawStyle":
        """The style a display output's config asks for (its ``min_score`` and ``badge``)."""
        return cls(min_score=cfg.min_score, badge=cfg.badge)

    def sizes(self, image: np.ndarray) -> tuple[int, int]:
        short = min(image.shape[:2])
        thickness = self.thickness or max(1, round(short / 240))
        return thickness, self.radius or thickness + 2


def confidence_color(score: float, min_score: float = 0.2) -> Color:
    """Red at ``min_score`` through yellow to green at 1.0: the eye reads doubt at a glance."""
    t = float(np.clip((score - min_score) / max(1.0 - min_score, 1e-6), 0.0, 1.0))
    if t < 0.5:
        return (255, int(round(510 * t)), 0)
    return (int(round(255 * (2.0 - 2.0 * t))), 255, 0)


def edge_colors(names: Sequence[str], edges: Sequence[tuple[int, int]]) -> list[Color]:
    """One colour per edge: left limbs, right limbs, and everything across the body."""
    out = []
    for a, b in edges:
        na = names[a] if a < len(names) else ""
        nb = names[b] if b < len(names) else ""
        if na.startswith("left") and nb.startswith("left"):
            out.append(LEFT)
        elif na.startswith("right") and nb.startswith("right"):
            out.append(RIGHT)
        else:
            out.append(CENTER)
    return out


def _visible(kp: np.ndarray, min_score: float) -> np.ndarray:
    return (kp[:, 2] >= min_score) & np.isfinite(kp[:, 0]) & np.isfinite(kp[:, 1])


def draw_pose(image: np.ndarray, pose: Pose, edges: Sequence[tuple[int, int]], colors: Sequence[Color],
              style: DrawStyle = DrawStyle()) -> None:
    """Draw one person in place: edges between visible keypoints, then the dots on top."""
    thickness, radius = style.sizes(image)
    kp = pose.keypoints
    vis = _visible(kp, style.min_score)
    pts = np.round(np.nan_to_num(kp[:, :2])).astype(np.int64)
    for (a, b), color in zip(edges, colors):
        if a < len(kp) and b < len(kp) and vis[a] and vis[b]:
            cv2.line(image, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color, thickness, cv2.LINE_AA)
    for i in np.flatnonzero(vis):
        center = tuple(map(int, pts[i]))
        cv2.circle(image, center, radius + 1, OUTLINE, -1, cv2.LINE_AA)
        cv2.circle(image, center, radius, confidence_color(float(kp[i, 2]), style.min_score), -1, cv2.LINE_AA)
    if style.ids and pose.track_id is not None and vis.any():
        x1, y1 = pose.bbox[0], pose.bbox[1]
        draw_label(image, f"#{pose.track_id}", (int(round(x1)), int(round(y1)) - radius - 2))


def label_box(shape: tuple[int, ...], text: str, origin: tuple[int, int], scale: float | None = None,
              ) -> tuple[tuple[int, int, int, int], tuple[int, int], float, int]:
    """Where ``draw_label`` puts ``text``: its box (x1, y1, x2, y2), the text origin, scale and weight.

    The box's size comes from the font's metrics, which differ between OpenCV releases.
    """
    h, w = shape[:2]
    scale = scale or max(0.4, min(h, w) / 800)
    weight = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, weight)
    pad = max(2, round(4 * scale))
    x = int(np.clip(origin[0], 0, max(0, w - tw - 2 * pad)))
    y = int(np.clip(origin[1], th + base + 2 * pad, h))
    box = (x, max(0, y - th - base - 2 * pad), min(w, x + tw + 2 * pad), y)
    return box, (x + pad, y - base - pad), scale, weight


def draw_label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float | None = None,
               alpha: float = 1.0) -> None:
    """Text on a dark box whose bottom-left corner is ``origin`` (clamped inside the image)."""
    (x, y0, x2, y), at, scale, weight = label_box(image.shape, text, origin, scale)
    roi = image[y0:y, x:x2]
    if alpha >= 1.0:
        roi[:] = LABEL_BG
    else:
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)
    cv2.putText(image, text, at, FONT, scale, LABEL_FG, weight, cv2.LINE_AA)


def badge_text(fps: float | None, latency_ms: float | None, people: int, idle: bool = False) -> str:
    if idle:
        return "idle: nobody seen"
    parts = []
    if fps is not None:
        parts.append(f"{fps:.1f} fps")
    if latency_ms:
        parts.append(f"{latency_ms:.0f} ms")
    parts.append(f"{people} {'person' if people == 1 else 'people'}")
    return " | ".join(parts)


def draw_badge(image: np.ndarray, text: str) -> None:
    """The status badge, top-left, on a translucent box so the video stays visible behind it."""
    margin = max(4, min(image.shape[:2]) // 60)
    draw_label(image, text, (margin, margin + 1), alpha=0.6)


def draw_poses(image: np.ndarray, poses: Sequence[Pose], names: Sequence[str],
               edges: Sequence[tuple[int, int]], style: DrawStyle = DrawStyle(), copy: bool = True) -> np.ndarray:
    """Every person drawn on (a copy of) ``image``; returns the drawn image."""
    out = image.copy() if copy else image
    colors = edge_colors(names, edges)
    for pose in poses:
        draw_pose(out, pose, edges, colors, style)
    return out


def _zones(image: np.ndarray, zones: list[dict], thickness: int) -> None:
    h, w = image.shape[:2]
    for zone in zones:
        pts = np.round(np.asarray(zone["polygon"], dtype=np.float64) * [w, h]).astype(np.int32)
        busy = bool(zone["inside"])
        color = ZONE_BUSY if busy else ZONE
        if busy:  # a faint fill: occupied at a glance
            fill = image.copy()
            cv2.fillPoly(fill, [pts], color, cv2.LINE_AA)
            cv2.addWeighted(fill, 0.2, image, 0.8, 0, dst=image)
        cv2.polylines(image, [pts], True, color, thickness, cv2.LINE_AA)
        top = pts[np.argmin(pts[:, 1])]
        draw_label(image, f"{zone['name']}: {len(zone['inside'])}" if busy else zone["name"],
                   (int(top[0]), int(top[1])), alpha=0.6)


def _arcs(image: np.ndarray, arcs: list[dict], thickness: int) -> None:
    scale = max(0.35, min(image.shape[:2]) / 1200)
    for arc in arcs:
        a, b, c = np.asarray(arc["points"], dtype=np.float64)
        r = max(6.0, 0.3 * min(np.hypot(*(a - b)), np.hypot(*(c - b))))
        start = np.degrees(np.arctan2(a[1] - b[1], a[0] - b[0]))
        sweep = (np.degrees(np.arctan2(c[1] - b[1], c[0] - b[0])) - start + 540.0) % 360.0 - 180.0  # the inner arc
        center = (int(round(b[0])), int(round(b[1])))
        cv2.ellipse(image, center, (int(round(r)), int(round(r))), 0.0, start, start + sweep, ARC, thickness, cv2.LINE_AA)
        mid = np.radians(start + sweep / 2.0)
        at = b + (r + 4 * thickness) * np.array([np.cos(mid), np.sin(mid)])
        draw_label(image, f"{arc['deg']:.0f}", (int(at[0]), int(at[1])), scale=scale, alpha=0.6)


def draw_analytics(image: np.ndarray, view: dict, poses: Sequence[Pose], style: DrawStyle = DrawStyle()) -> None:
    """In place: zone outlines (faintly filled while occupied), angle arcs with degrees, a rep counter under each person."""
    thickness, _ = style.sizes(image)
    _zones(image, view.get("zones", []), thickness)
    _arcs(image, view.get("angles", []), thickness)
    counts: dict[int, list[str]] = {}
    for rep in view.get("reps", []):
        counts.setdefault(rep["track_id"], []).append(f"{rep['analysis']} {rep['count']}")
    for pose in poses:
        if pose.track_id in counts:
            x1, _, _, y2 = pose.bbox
            draw_label(image, " | ".join(counts[pose.track_id]), (int(round(x1)), int(round(y2))))


def annotate(result: PoseResult, meta: StreamMeta, style: DrawStyle = DrawStyle()) -> np.ndarray:
    """A new image: the frame with its poses, analytics (when configured) and (if enabled) the live badge."""
    out = draw_poses(result.frame.image, result.poses, meta.keypoint_names, meta.edges, style)
    if result.analytics:
        draw_analytics(out, result.analytics, result.poses, style)
    if style.badge:
        fps = meta.stats.fps() if hasattr(meta.stats, "fps") else None
        draw_badge(out, badge_text(fps, result.latency_ms, len(result.poses), result.idle))
    return out


__all__ = ["DrawStyle", "annotate", "draw_poses", "draw_pose", "draw_badge", "badge_text", "draw_label",
           "draw_analytics", "confidence_color", "edge_colors"]
