"""Scenes, prompts and token grids of the synthetic world.

A scene is (shape, shape colour, background colour, position, size). Its prototype is a token grid:
background tokens in the background colour, the shape's interior in the shape colour, and its outline in
the "textured" variant of the shape colour. The codebook has two tokens per colour (flat, textured), so
V = 2 × |colours|. A prompt names some attributes ("a red circle at the top left on a blue background",
"a large square", "something purple"); the attributes it leaves open are free, so it covers several scenes.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (235, 210, 40),
    "purple": (140, 60, 190), "orange": (245, 140, 30), "white": (240, 240, 240), "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle", "cross")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "center")
SIZES = ("small", "large")


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    position: str
    size: str

    def describe(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} at the {self.position} on {article(self.background)} background"


@dataclass
class SceneGrammar:
    """The attribute values of a world and the token grid they are drawn on."""

    grid: int = 16
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = SHAPES
    positions: tuple[str, ...] = POSITIONS
    sizes: tuple[str, ...] = SIZES
    scenes: list[Scene] = field(init=False)

    def __post_init__(self):
        for c in self.colours:
            if c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; known: {', '.join(COLOURS)}")
        self.scenes = [Scene(s, c, b, p, z) for s, c, b, p, z in itertools.product(
            self.shapes, self.colours, self.colours, self.positions, self.sizes) if c != b]

    @property
    def codebook_size(self) -> int:
        return 2 * len(self.colours)

    def flat_token(self, colour: str) -> int:
        return 2 * self.colours.index(colour)

    def prototypes(self) -> np.ndarray:
        """``(K, grid²)`` int64 token grid of every scene."""
        return np.stack([self.prototype(s).reshape(-1) for s in self.scenes])

    def prototype(self, scene: Scene) -> np.ndarray:
        inside = shape_mask(scene.shape, scene.position, scene.size, self.grid)
        # Outline = inside cells with a 4-neighbour outside: gives the shape an edge texture to get right.
        padded = np.pad(inside, 1)
        interior = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        tokens = np.full((self.grid, self.grid), self.flat_token(scene.background), dtype=np.int64)
        tokens[inside] = self.flat_token(scene.colour) + 1
        tokens[interior] = self.flat_token(scene.colour)
        return tokens

    # -- prompts ---------------------------------------------------------------------------------

    def parse(self, prompt: str) -> dict[str, str]:
        """The attributes a prompt fixes. 'on a X background' names the background; other colours the shape."""
        text = " " + re.sub(r"[^a-z ]", " ", prompt.lower()) + " "
        found: dict[str, str] = {}
        for colour in self.colours:
            if re.search(rf" {colour} background ", text):
                found["background"] = colour
                text = text.replace(f" {colour} background ", " background ")
        for colour in self.colours:
            if f" {colour} " in text:
                found["colour"] = colour
        for key, values in (("shape", self.shapes), ("size", self.sizes)):
            for value in values:
                if re.search(rf" {value}s? ", text):
                    found[key] = value
        for position in sorted(self.positions, key=len, reverse=True):  # "top left" before "left"
            if f" {position} " in text:
                found["position"] = position
                break
        return found

    def scene_mask(self, prompt: str) -> np.ndarray:
        """Boolean ``(K,)``: the scenes a prompt describes (all scenes if it fixes nothing)."""
        attributes = self.parse(prompt)
        return np.array([all(getattr(s, k) == v for k, v in attributes.items()) for s in self.scenes])

    def prompt_set(self, n: int = 48, seed: int = 0) -> list[tuple[str, str, str]]:
        """(id, prompt, category) — a deterministic mix of fully, partly and barely specified prompts.

        Every text is distinct: identical texts with the same seed give byte-identical images, so a
        repeated prompt would count one observation twice in every statistic. A draw that
        repeats an earlier text is redrawn (a few tries), then the next richer kind is tried; a set
        that cannot hold ``n`` distinct texts raises ``ValueError``.
        """
        rng = np.random.default_rng(seed)
        out, seen = [], set()
        kinds = ("full", "partial", "minimal")
        for index in range(n):
            kind = kinds[index % 3]
            text = None
            # richer kinds last: "minimal" has only |sizes|·|shapes| + |colours| distinct texts
            for candidate in kinds[kinds.index(kind)::-1]:
                for _ in range(32):
                    drawn = self._prompt_text(candidate, rng)
                    if drawn not in seen:
                        text, kind = drawn, candidate
                        break
                if text is not None:
                    break
            if text is None:
                raise ValueError(f"the scene grammar cannot give {n} distinct prompts (stopped at {index})")
            seen.add(text)
            out.append((f"w{index:03d}", text, kind))
        return out

    def _prompt_text(self, kind: str, rng: np.random.Generator) -> str:
        scene = self.scenes[int(rng.integers(len(self.scenes)))]
        if kind == "full":
            return scene.describe()
        if kind == "partial":
            return f"{article(scene.colour)} {scene.shape} on {article(scene.background)} background"
        return f"a {scene.size} {scene.shape}" if rng.random() < 0.5 else f"something {scene.colour}"


def article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def shape_mask(shape: str, position: str, size: str, grid: int) -> np.ndarray:
    """Boolean ``(grid, grid)``: the cells a shape covers."""
    quarter, centre = grid / 4, (grid - 1) / 2
    rows = {"top": quarter - 0.5, "bottom": grid - quarter - 0.5, "center": centre}
    cols = {"left": quarter - 0.5, "right": grid - quarter - 0.5, "center": centre}
    row_key, col_key = (position.split() + [position])[:2] if position != "center" else ("center", "center")
    cy, cx = rows[row_key], cols[col_key]
    radius = grid * (0.16 if size == "small" else 0.28)
    y, x = np.mgrid[0:grid, 0:grid].astype(float)
    dy, dx = y - cy, x - cx
    if shape == "circle":
        mask = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        mask = np.maximum(abs(dx), abs(dy)) <= radius * 0.8
    elif shape == "triangle":  # apex up: the half-width grows from the top row to the base
        mask = (dy >= -radius) & (dy <= radius * 0.8) & (abs(dx) <= (dy + radius) * 0.6)
    elif shape == "cross":
        arm = max(radius / 3, 0.5)
        mask = (np.maximum(abs(dx), abs(dy)) <= radius) & ((abs(dx) <= arm) | (abs(dy) <= arm))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    if not mask.any():  # tiny grids: a shape covers at least its centre cell
        mask[int(round(cy)), int(round(cx))] = True
    return mask
