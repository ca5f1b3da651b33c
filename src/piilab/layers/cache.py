"""A key-value cache that grows in place, for decoding loops that append a few positions per pass
(`generate` and prompt-lookup decoding).

transformers' DynamicLayer appends by `torch.cat`, which copies the whole cache of a layer at
every pass: with 32 rows of a few hundred positions that is 16% of extraction's time on 2 cores.
A RoomyLayer keeps its keys and values at the start of a buffer with ROOM free positions after
them; a pass writes its new positions there, and only a full buffer is copied into a bigger one.
It also joins another cache's rows (continuous batching), drops rows or end positions, and packs
each row's positions to the front (`take_columns`, `packed`), so that the positions a long stream
hides do not pile up.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

ROOM = 64
"""Free cache positions kept after the last one, so most passes append without reallocating."""
PACK_WHEN_WIDER = 2
"""`pack_when_sparse` packs a cache once it is this many times wider than the most positions a
row holds."""


class RoomyLayer(DynamicLayer):
    """A cache layer whose keys and values (B, heads, S, D) are views of the first `used`
    positions of buffers with room to grow; a buffer's later positions are written before they
    are read."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.device, self.is_initialized = key_states.device, True
            self._hold(key_states[:, :, :0], value_states[:, :, :0], key_states.shape[-2])
        self._append(key_states, value_states)
        return self.keys, self.values

    def _append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        start, end = self.used, self.used + keys.shape[-2]
        if end > self._keys.shape[-2]:  # full: move to a bigger buffer, once per ROOM positions
            self._hold(self.keys, self.values, end)
        self._keys[:, :, start:end] = keys
        self._values[:, :, start:end] = values
        self._show(end)

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """New buffers of `length` + ROOM positions, starting with the given states."""
        self._keys = _empty_like(keys, length + ROOM)
        self._values = _empty_like(values, length + ROOM)
        self._keys[:, :, :keys.shape[-2]] = keys
        self._values[:, :, :values.shape[-2]] = values
        self._show(keys.shape[-2])

    def _show(self, used: int) -> None:
        self.used = used
        self.keys, self.values = self._keys[:, :, :used], self._values[:, :, :used]

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0 and self.is_initialized:
            self._show(self.used + tokens_to_remove)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices`, in that order (`select_rows`)."""
        self.select_rows(indices.tolist())

    def select_rows(self, order: list[int]) -> None:
        """Keep rows `order`, in that order. Only the rows whose place changes are copied, one by
        one (`compacted` orders make them few; a copy of two rows by index tensors took six times
        as long); the buffers keep their size."""
        if not self.is_initialized:
            return
        n, moves = len(order), [(place, row) for place, row in enumerate(order) if place != row]
        if n > self._keys.shape[0] or {place for place, _ in moves} & {row for _, row in moves}:
            # more rows than the buffers hold, or a row read after its place is written: by index
            index = torch.tensor(order, device=self._keys.device)
            self._keys, self._values = self._keys[index], self._values[index]
        else:
            for place, row in moves:
                self._keys[place].copy_(self._keys[row])
                self._values[place].copy_(self._values[row])
            self._keys, self._values = self._keys[:n], self._values[:n]
        self._show(self.used)

    def take_columns(self, index: torch.Tensor) -> None:
        """Keep, for each row b, the positions `index[b]` (B, W), in that order."""
        if self.is_initialized:
            pick = index[:, None, :, None].expand(-1, self.keys.shape[1], -1, self.keys.shape[-1])
            self._hold(self.keys.gather(2, pick), self.values.gather(2, pick), index.shape[1])

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            rows = torch.arange(self._keys.shape[0], device=self._keys.device)
            self.batch_select_indices(rows.repeat_interleave(repeats))

    def join(self, other: "RoomyLayer", length: int) -> None:
        """Append `other`'s rows, whose used positions fit in `length` as ours do; the used
        positions become `length` for every row, padded with zeros (which a mask hides; garbage
        could be NaN, and a hidden NaN value still spoils attention's weighted sum). The room
        after `length` is left unwritten, as a buffer's later positions are."""
        if self.is_initialized:
            rows = self.keys.shape[0]
            joined = []
            for mine, theirs in ((self.keys, other.keys), (self.values, other.values)):
                states = mine.new_empty(rows + theirs.shape[0], *mine.shape[1:-2], length + ROOM,
                                        mine.shape[-1])
                for part, place in ((mine, states[:rows]), (theirs, states[rows:])):
                    place[:, :, :part.shape[-2]] = part
                    place[:, :, part.shape[-2]:length] = 0
                joined.append(states)
            self._keys, self._values = joined
            self._show(length)


def packed(held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a cache whose columns hold the positions `held` (B, S; -1: hidden): the columns to take
    (`take_columns`) so that each row's held ones come first, in their order, and what the
    packed columns hold. Its width is the most columns any row holds; a row that holds fewer
    keeps hidden columns after its own (finite values, which the mask hides)."""
    hidden = (held < 0).to(torch.int8)
    width = int((1 - hidden).sum(1).max()) if held.numel() else 0
    index = torch.sort(hidden, dim=1, stable=True).indices[:, :width]
    return index, held.gather(1, index)


def pack_when_sparse(cache: DynamicCache, held: torch.Tensor) -> torch.Tensor:
    """Pack the rows of a cache of RoomyLayers (`packed`) once it is PACK_WHEN_WIDER times wider
    than the most positions a row holds; what its columns then hold. Prompt-lookup decoding's
    batches are continuous, so without it a cache would grow by the hidden positions of every
    pass of a stream (rejected drafts', ended rows'): memory and attention's work without end."""
    if held.shape[1] <= PACK_WHEN_WIDER * int((held >= 0).sum(1).max()):
        return held
    index, held = packed(held)
    for layer in cache.layers:
        layer.take_columns(index)
    return held


def select_rows(cache: DynamicCache, order: list[int]) -> None:
    """Keep the rows `order` of every layer, in that order (RoomyLayers from the list itself, so
    a GPU is not asked for it once per layer)."""
    index = None
    for layer in cache.layers:
        if isinstance(layer, RoomyLayer):
            layer.select_rows(order)
        elif layer.is_initialized:  # a layer past the exit layer holds nothing
            index = torch.tensor(order, device=layer.keys.device) if index is None else index
            layer.batch_select_indices(index)


def compacted(rows: int, keep: list[int]) -> list[int]:
    """An order of the `keep` rows (of `rows`) for `select_rows` that moves as few as
    possible: kept rows stay in place, except those beyond the new end, which fill the places
    of dropped ones."""
    end, kept = len(keep), set(keep)
    movers = [row for row in keep if row >= end]
    holes = [row for row in range(end) if row not in kept]
    order = list(range(end))
    for hole, mover in zip(holes, movers):
        order[hole] = mover
    return order


def branch_places(rows: int, keep: list[int], parents: list[int]) -> tuple[list[int], list[int]]:
    """Places for new rows copied from `parents` (rows that ended this pass, one entry per new
    row), when the `keep` rows of `rows` go on: a parent's first copy takes the parent's own place
    (nothing to copy), the others places of ended rows that are nobody's parent, else new places
    at the end. (The row each place's cache must come from, for `select_rows`; each new
    row's place.)"""
    spare = [i for i in range(rows) if i not in keep and i not in parents]
    source, places, taken = list(range(rows)), [], set()
    for parent in parents:
        if parent not in taken:
            place = parent
            taken.add(parent)
        elif spare:
            place = spare.pop()
            source[place] = parent
        else:
            place = len(source)
            source.append(parent)
        places.append(place)
    return source, places


def _empty_like(states: torch.Tensor, length: int) -> torch.Tensor:
    return states.new_empty(*states.shape[:-2], length, states.shape[-1])


def roomy_cache(config, windowed: bool = False) -> DynamicCache:
    """A DynamicCache for a model `config` whose full-attention layers are RoomyLayers; with
    `windowed`, its sliding-window layers too, which then keep every position (the attention
    mask must apply the window: layers/lookup.py does, by position)."""
    cache = DynamicCache(config=config)
    kinds = (DynamicLayer, DynamicSlidingWindowLayer) if windowed else (DynamicLayer,)
    cache.layers = [RoomyLayer() if type(layer) in kinds else layer for layer in cache.layers]
    return cache
