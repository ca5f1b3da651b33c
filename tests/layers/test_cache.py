"""The roomy key-value cache holds what transformers' DynamicLayer holds, through every operation
prompt-lookup decoding uses (append, crop, drop rows, join another cache's rows, pack rows)."""

import torch
from transformers.cache_utils import DynamicLayer

from piilab.layers.cache import (
    ROOM,
    RoomyLayer,
    branch_places,
    pack_when_sparse,
    packed,
    roomy_cache,
    select_rows,
)


def states(rows: int, length: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, 2, length, 4, generator=torch.Generator().manual_seed(seed))


def same(roomy: RoomyLayer, plain: DynamicLayer) -> bool:
    return torch.equal(roomy.keys, plain.keys) and torch.equal(roomy.values, plain.values)


def test_roomy_layer_appends_crops_and_drops_rows_as_the_plain_layer_does():
    roomy, plain = RoomyLayer(), DynamicLayer()
    for step, length in enumerate([5, 1, 3, ROOM + 7, 2]):  # the fourth outgrows the buffer
        k, v = states(3, length, step), states(3, length, 100 + step)
        got, want = roomy.update(k, v), plain.update(k, v)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert same(roomy, plain) and roomy.get_seq_length() == plain.get_seq_length()
    roomy.crop(-4), plain.crop(-4)
    assert same(roomy, plain)
    rows = torch.tensor([2, 0])
    roomy.batch_select_indices(rows), plain.batch_select_indices(rows)
    assert same(roomy, plain)
    k, v = states(2, 3, 7), states(2, 3, 8)  # written over the cropped positions
    roomy.update(k, v), plain.update(k, v)
    assert same(roomy, plain)


def test_roomy_layer_joins_rows_padded_with_zeros_at_the_end():
    mine, theirs = RoomyLayer(), RoomyLayer()
    a, b = states(2, 6, 1), states(1, 9, 2)
    mine.update(a, a + 1)
    theirs.update(b, b + 1)
    for _ in range(4):  # freed blocks of the joined buffers' size, full of NaN, for them to reuse
        torch.full((3, 2, 11 + ROOM, 4), float("nan"))
    mine.join(theirs, 11)
    assert mine.keys.shape == (3, 2, 11, 4) and mine.get_seq_length() == 11
    assert torch.equal(mine.keys[:2, :, :6], a) and torch.equal(mine.values[2:, :, :9], b + 1)
    assert not mine.keys[:2, :, 6:].any() and not mine.values[2:, :, 9:].any()
    more = states(3, 2, 3)
    mine.update(more, more)  # appends after the joined length, for every row
    assert torch.equal(mine.keys[:, :, 11:], more)


def test_roomy_cache_replaces_the_full_attention_layers_of_a_config():
    from transformers import LlamaConfig

    cache = roomy_cache(LlamaConfig(num_hidden_layers=3, hidden_size=8, num_attention_heads=2,
                                    num_key_value_heads=1, intermediate_size=16, vocab_size=32))
    assert [type(layer) for layer in cache.layers] == [RoomyLayer] * 3


def test_compacted_orders_keep_the_rows_asked_for_and_move_few():
    from piilab.layers.cache import compacted

    assert compacted(6, [0, 1, 3, 5]) == [0, 1, 5, 3]  # row 5 fills the place of row 2
    assert compacted(4, [0, 1, 2]) == [0, 1, 2]  # dropping the last row moves nothing
    assert sorted(compacted(8, [1, 2, 6, 7])) == [1, 2, 6, 7]
    roomy, plain = RoomyLayer(), DynamicLayer()
    k = states(6, 4, 9)
    roomy.update(k, -k), plain.update(k, -k)
    for order in ([0, 1, 5, 3], [2, 0, 1], [1]):  # a compacted order, any order, one row
        index = torch.tensor(order)
        roomy.batch_select_indices(index), plain.batch_select_indices(index)
        assert same(roomy, plain)


def test_select_rows_keeps_the_same_rows_in_every_kind_of_layer():
    from transformers import DynamicCache

    cache, plain = DynamicCache(), DynamicCache()
    # the middle layer is never written, as the layers past an exit layer are not
    cache.layers = [RoomyLayer(), DynamicLayer(), DynamicLayer()]
    plain.layers = [DynamicLayer(), DynamicLayer(), DynamicLayer()]
    for index in (0, 2):
        k = states(5, 3, index)
        cache.update(k, k + 1, index), plain.update(k, k + 1, index)
    for order in ([0, 4, 2], [1, 0], [1, 1, 0, 0]):  # moves into free places, a swap, growth
        select_rows(cache, order)
        plain.batch_select_indices(torch.tensor(order))
        assert same(cache.layers[0], plain.layers[0]) and same(cache.layers[2], plain.layers[2])
        assert not cache.layers[1].is_initialized


def test_roomy_layer_reorders_and_repeats_rows_as_the_plain_layer_does():
    roomy, plain = RoomyLayer(), DynamicLayer()
    k = states(3, 5, 4)
    roomy.update(k, k * 2), plain.update(k, k * 2)
    roomy.reorder_cache(torch.tensor([2, 2, 0])), plain.reorder_cache(torch.tensor([2, 2, 0]))
    assert same(roomy, plain)
    roomy.batch_repeat_interleave(2), plain.batch_repeat_interleave(2)
    assert same(roomy, plain) and roomy.keys.shape[0] == 6
    more = states(6, 1, 5)
    roomy.update(more, more), plain.update(more, more)
    assert same(roomy, plain)


def test_branch_places_reuse_the_parents_and_the_ended_rows_before_growing():
    # row 1 ends with two branches, rows 2 and 3 end without: the second branch takes row 3's place
    assert branch_places(4, keep=[0], parents=[1, 1]) == ([0, 1, 2, 1], [1, 3])
    # every ended row is a parent: the branches beyond the first of each get new places
    assert branch_places(4, keep=[0, 2], parents=[1, 1, 3, 1]) == ([0, 1, 2, 3, 1, 1], [1, 4, 3, 5])


def test_packed_moves_each_rows_held_columns_to_the_front_in_order():
    held = torch.tensor([[0, -1, 1, -1, -1, 2, -1],
                         [-1, 0, -1, -1, 1, -1, -1],
                         [-1, -1, -1, -1, -1, -1, 0]])
    index, now = packed(held)
    assert now.tolist() == [[0, 1, 2], [0, 1, -1], [0, -1, -1]]
    assert index[:, :1].tolist() == [[0], [1], [6]] and index[0].tolist() == [0, 2, 5]
    assert index[1, :2].tolist() == [1, 4]


def test_a_sparse_cache_is_packed_and_keeps_what_each_row_holds():
    cache = roomy_cache_of(layers=2)
    k = states(3, 7, 5)
    for layer in cache.layers:
        layer.update(k, -k)
    held = torch.tensor([[0, -1, 1, -1, -1, 2, -1],
                         [-1, 0, -1, -1, 1, -1, -1],
                         [-1, -1, -1, -1, -1, -1, 0]])
    now = pack_when_sparse(cache, held)  # 7 columns, 3 held at most: packed to 3
    assert now.shape == (3, 3)
    for layer in cache.layers:
        assert layer.keys.shape == (3, 2, 3, 4)
        for row, columns in enumerate([[0, 2, 5], [1, 4], [6]]):
            assert torch.equal(layer.keys[row, :, :len(columns)], k[row, :, columns])
            assert torch.equal(layer.values[row, :, :len(columns)], -k[row, :, columns])
    more = states(3, 1, 6)
    cache.layers[0].update(more, more)  # appends after the packed columns
    assert torch.equal(cache.layers[0].keys[:, :, 3:], more)
    dense = torch.tensor([[0, 1, -1], [0, -1, 1], [-1, 0, 1]])
    assert pack_when_sparse(cache, dense) is dense  # not twice as wide as it needs: left alone


def roomy_cache_of(layers: int):
    from transformers import LlamaConfig

    return roomy_cache(LlamaConfig(num_hidden_layers=layers, hidden_size=8, num_attention_heads=2,
                                   num_key_value_heads=1, intermediate_size=16, vocab_size=32))
