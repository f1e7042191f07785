"""Exact TreeSHAP for a LightGBM booster, many rows at a time.

LightGBM's ``pred_contrib`` runs path-dependent TreeSHAP row by row in
O(leaves x depth^2) per tree: about 2.6 ms of CPU a row for 300 trees of 31
leaves, so minutes of CPU for a visit list of 50,000 households. This module
computes the same values with the work reordered, at an eighth to a fifth of
the CPU per row (the demo's champion, one thread).

For one leaf, path-dependent TreeSHAP depends on a row only through which of
the leaf's distinct path features the row "agrees" with (satisfies every
split on that feature along the path). With d such features there are 2^d
patterns, and the leaf's contribution to each of its features is one number
per pattern. Those numbers are tabulated once per booster for leaves with up
to :data:`TABLE_MAX_FEATURES` path features; a row then costs its split
decisions, one pass over the tree that hands every node and leaf the set of
path features the row disagrees with (its parent's, plus the parent's feature
if the row goes the other way), one table look-up per leaf, and d additions.
Deeper leaves (3 % of a 300-tree model's) are computed per row by the same
function that fills the tables, so a value does not depend on which way it was
found, nor on the table width. Both are compiled with numba (a dependency of
shap), and the per-row loop runs rows in parallel; each row's arithmetic is
fixed, so results do not depend on the number of threads.

The same flattened trees also predict (:meth:`TreeShapTables.raw_scores`): a
walk from the root by the same split decision, adding leaf values in
LightGBM's order, gives its raw scores bit for bit, a third faster.

The algebra (Lundberg et al. 2020, Algorithm 2): with ``z_j`` the fraction of
the node's training rows that follow the path at feature ``j`` (multiplied
over repeated splits on ``j``) and ``o_j`` in {0, 1} the row's agreement, the
leaf value ``v`` contributes to feature ``i``

    v (o_i - z_i) sum_k w(k) [y^k] prod_{j != i} (z_j + o_j y),  w(k) = k! (d-1-k)! / d!

Splits are decided exactly as LightGBM's ``Tree::Decision`` decides them,
numerical (threshold, missing type, default direction) and categorical (the
category set of ``decision_type "=="``: NaN, values whose integer part is
negative and categories outside the set go right). Agreement with a path
feature means satisfying every split on it along the path, whatever the
kind. :meth:`TreeShapTables.supports` says when a booster needs LightGBM's
own ``pred_contrib`` instead (linear trees, more than one tree per
iteration). Values agree with ``pred_contrib`` to floating-point rounding
(about 1e-14 in log-odds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numba
import numpy as np

TABLE_MAX_FEATURES = 12
"""Leaves with at most this many distinct path features get a table of 2^d x d values.

Measured on a 300-tree model of 9,300 leaves (numba fills the tables on every core): 12 builds in
about 1 s and 348 MB, and explains 44,000 households in 5.9 s wall on 2 cores against 11.4 s
for 8 (33 MB), 8.0 s for 10 and 5.4 s for 14 (633 MB); single rows cost 0.60 ms of CPU
against 0.90 ms for 8. See :data:`TABLE_MAX_BYTES` for models with far more leaves."""

TABLE_MAX_BYTES = 2**29
"""The tables of a model stop at the widest leaves that keep them under this (512 MiB).

A model of many more leaves than the project trains (thousands of trees, hundreds of leaves
each) would otherwise need gigabytes at :data:`TABLE_MAX_FEATURES`; its wider leaves are then
computed per row instead, which costs time, not correctness."""

_ZERO_THRESHOLD = float(np.float32(1e-35))
"""LightGBM's kZeroThreshold (a float constant): |x| at most this counts as zero."""

_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2
_MAX_PATH_FEATURES = 62

_ROWS_PER_BLOCK = 512
"""Most rows a thread takes through all trees together (tree by tree, for cache locality)."""

_MIN_ROWS_PER_BLOCK = 2
"""Fewer rows than this per thread stay on the calling thread: waking the pool would cost more."""

_LARGEST_CATEGORY = 2**31 - 1
"""LightGBM casts a categorical value to a C ``int``; larger values never match a category."""


class UnsupportedBooster(ValueError):
    """The booster has a tree this module cannot explain; use LightGBM's pred_contrib."""


@dataclass(frozen=True)
class TreeShapTables:
    """A booster flattened for :meth:`contributions`; build once per model with :meth:`from_booster`.

    Trees own consecutive ranges of nodes (numbered parent first) and leaves;
    a leaf owns a range of columns, one per distinct path feature in slot
    order (the order of the features' first splits on the path). Tree ``t``'s
    positions (its nodes, then its leaves, so node k is position k) have one
    step each, from ``tree_node_start[t] + tree_leaf_start[t]`` on, that
    hands a position its parent's mask; the root's step (the tree's first)
    does nothing.
    """

    n_features: int
    base_value: float
    """Expected raw score (the last column of LightGBM's pred_contrib)."""
    tree_node_start: np.ndarray
    tree_leaf_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_default_left: np.ndarray
    node_missing: np.ndarray
    node_categorical: np.ndarray
    node_bitset_start: np.ndarray
    """Categorical nodes: their category set is ``bitset[start:start + 1 + ...]``, up to the next start."""
    bitset: np.ndarray
    """32-bit words; bit c of a node's words is set when category c goes left."""
    node_left: np.ndarray
    """The position (local to the tree: nodes, then leaves) of the node's left child."""
    node_right: np.ndarray
    """The same for the right child."""
    step_target: np.ndarray
    """The position (local to the tree) a step gives a mask; a tree's steps go root first, level by level."""
    step_parent: np.ndarray
    """The target's parent node (local to the tree)."""
    step_left: np.ndarray
    """Whether the target is its parent's left child."""
    step_slot: np.ndarray
    """The slot of the parent's feature among the path features of every leaf below it."""
    leaf_column_start: np.ndarray
    leaf_table_offset: np.ndarray
    """Offset of the leaf's table in ``table``; -1 for leaves computed per row."""
    leaf_value: np.ndarray
    column_feature: np.ndarray
    column_zero_fraction: np.ndarray
    table: np.ndarray
    """Per-leaf tables, flat: offset + pattern x d + slot -> contribution."""
    shapley_weights: np.ndarray
    """w[d, k] = k! (d-1-k)! / d!"""

    @staticmethod
    def supports(booster: lgb.Booster) -> bool:
        """Whether the model is a single-output GBDT of ordinary (not linear) trees."""
        try:
            _check_model(booster.dump_model())
        except UnsupportedBooster:
            return False
        return True

    @classmethod
    def from_booster(
        cls,
        booster: lgb.Booster,
        table_max_features: int = TABLE_MAX_FEATURES,
        table_max_bytes: int = TABLE_MAX_BYTES,
    ) -> TreeShapTables:
        """Flatten the trees LightGBM predicts with and tabulate leaves of up to ``table_max_features``.

        Fewer, when the tables would pass ``table_max_bytes``: then only the leaves up to the
        widest that fits. The values are the same either way, bit for bit; only the speed differs.
        Raises :class:`UnsupportedBooster` when a tree cannot be handled here.
        """
        model = booster.dump_model()
        _check_model(model)
        n_features = int(model["max_feature_idx"]) + 1
        trees = [_parse_tree(info["tree_structure"]) for info in model["tree_info"]]
        widths = [len(leaf.features) for tree in trees for leaf in tree.leaves]
        table_width = _table_width(widths, table_max_features, table_max_bytes)
        # The base value is whatever LightGBM reports for any row; one row is cheap.
        probe = np.zeros((1, n_features))
        base = float(np.asarray(booster.predict(probe, pred_contrib=True)).reshape(-1)[-1])

        tree_node_start, tree_leaf_start = [0], [0]
        nodes_flat: list[dict[str, Any]] = []
        step_target: list[int] = []
        step_parent: list[int] = []
        step_left: list[bool] = []
        step_slot: list[int] = []
        leaf_column_start, leaf_value = [0], []
        column_feature: list[int] = []
        column_zero: list[float] = []
        # Tables laid out tree by tree: the kernel walks one tree at a time, so its tables sit together.
        leaf_offsets: list[int] = []
        table_size = 0
        node_left: list[int] = []
        node_right: list[int] = []
        for tree in trees:
            nodes_flat += tree.nodes
            children = [[0, 0] for _ in tree.nodes]
            for position, (parent, left) in enumerate(zip(tree.parent, tree.left, strict=True)):
                if parent >= 0:
                    children[parent][0 if left else 1] = position
            node_left += [left for left, _ in children]
            node_right += [right for _, right in children]
            # Level by level, a step's parent was given its mask a whole level earlier: no chain
            # of each store feeding the next load, as parent-first order would make.
            depth: list[int] = []
            for parent in tree.parent:
                depth.append(0 if parent < 0 else depth[parent] + 1)
            for position in sorted(range(len(depth)), key=depth.__getitem__):
                parent = tree.parent[position]
                step_target.append(position)
                step_parent.append(max(parent, 0))
                step_left.append(tree.left[position])
                step_slot.append(0 if parent < 0 else tree.slot[parent])
            for leaf in tree.leaves:
                column_feature += leaf.features
                column_zero += [float(z) for z in leaf.zero_fraction]
                leaf_column_start.append(len(column_feature))
                leaf_value.append(leaf.value)
                width = len(leaf.features)
                leaf_offsets.append(table_size if width <= table_width else -1)
                table_size += _table_cells(width) if width <= table_width else 0
            tree_node_start.append(len(nodes_flat))
            tree_leaf_start.append(len(leaf_value))
        missing = {"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}
        categorical = [n["decision_type"] == "==" for n in nodes_flat]
        words: list[np.ndarray] = []
        bitset_start = [0]
        for node, is_categorical in zip(nodes_flat, categorical, strict=True):
            if is_categorical:
                words.append(_category_bitset(str(node["threshold"])))
            bitset_start.append(bitset_start[-1] + (len(words[-1]) if is_categorical else 0))
        widest = max((len(leaf.features) for tree in trees for leaf in tree.leaves), default=0)
        weights = np.zeros((widest + 1, max(widest, 1)))
        for d in range(1, widest + 1):
            for k in range(d):
                weights[d, k] = math.factorial(k) * math.factorial(d - 1 - k) / math.factorial(d)
        leaf_starts = np.array(leaf_column_start, dtype=np.int64)
        table_offsets = np.array(leaf_offsets, dtype=np.int64)
        leaf_values = np.array(leaf_value, dtype=np.float64)
        zero_fractions = np.array(column_zero, dtype=np.float64)
        table = np.empty(max(table_size, 1))
        _fill_tables(table_offsets, leaf_starts, leaf_values, zero_fractions, weights, table)
        return cls(
            n_features=n_features,
            base_value=base,
            tree_node_start=np.array(tree_node_start, dtype=np.int64),
            tree_leaf_start=np.array(tree_leaf_start, dtype=np.int64),
            node_feature=np.array([int(n["split_feature"]) for n in nodes_flat], dtype=np.int64),
            node_threshold=np.array(
                [0.0 if c else float(n["threshold"]) for n, c in zip(nodes_flat, categorical, strict=True)],
                dtype=np.float64,
            ),
            node_default_left=np.array([bool(n["default_left"]) for n in nodes_flat], dtype=np.bool_),
            node_missing=np.array(
                [missing[n.get("missing_type", "None")] for n in nodes_flat], dtype=np.int8
            ),
            node_categorical=np.array(categorical, dtype=np.bool_),
            node_bitset_start=np.array(bitset_start, dtype=np.int64),
            bitset=np.concatenate(words) if words else np.zeros(1, dtype=np.uint32),
            node_left=np.array(node_left, dtype=np.int32),
            node_right=np.array(node_right, dtype=np.int32),
            step_target=np.array(step_target, dtype=np.int32),
            step_parent=np.array(step_parent, dtype=np.int32),
            step_left=np.array(step_left, dtype=np.uint8),
            step_slot=np.array(step_slot, dtype=np.uint8),
            leaf_column_start=leaf_starts,
            leaf_table_offset=table_offsets,
            leaf_value=leaf_values,
            column_feature=np.array(column_feature, dtype=np.int64),
            column_zero_fraction=zero_fractions,
            table=table,
            shapley_weights=weights,
        )

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """TreeSHAP values, shape (rows, features + 1): LightGBM's pred_contrib layout, base value last.

        Rows are shared among numba's threads in blocks (an API round of a
        few dozen households uses both cores; a lone row stays on the calling
        thread). Each row's arithmetic is the same whatever the blocks, so the
        values are too.
        """
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(f"expected a (rows, {self.n_features}) matrix, got shape {matrix.shape}")
        out = np.zeros((matrix.shape[0], self.n_features + 1))
        out[:, self.n_features] = self.base_value
        rows = matrix.shape[0]
        if rows and len(self.node_feature):
            per_thread = -(-rows // numba.get_num_threads())
            rows_per_block = min(_ROWS_PER_BLOCK, max(_MIN_ROWS_PER_BLOCK, per_thread))
            kernel = _contributions_serial if rows <= rows_per_block else _contributions_parallel
            kernel(
                rows_per_block,
                matrix,
                out,
                self.tree_node_start,
                self.tree_leaf_start,
                self.node_feature,
                self.node_threshold,
                self.node_default_left,
                self.node_missing,
                self.node_categorical,
                self.node_bitset_start,
                self.bitset,
                self.step_target,
                self.step_parent,
                self.step_left,
                self.step_slot,
                self.leaf_column_start,
                self.leaf_table_offset,
                self.leaf_value,
                self.column_feature,
                self.column_zero_fraction,
                self.table,
                self.shapley_weights,
                _ZERO_THRESHOLD,
            )
        return out

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's raw score (log-odds) of each row, bit for bit LightGBM's ``predict(raw_score=True)``.

        Each row walks every tree from the root by :func:`_goes_left`, the decision the
        contributions use, and adds the leaf values in tree order from 0.0, as LightGBM does
        (tested bit for bit). A third faster than LightGBM's own prediction on 2 cores: 300,000
        rows of 231 features through 300 trees in 1.9 s against 2.9 s.
        """
        # Either layout: a block of rows reads each node's feature down a column, which Fortran order
        # (pandas' to_numpy of a feature table) keeps contiguous; a C copy of 100,000 rows cost 0.1 s.
        matrix = np.asarray(matrix, dtype=np.float64)
        if not (matrix.flags.c_contiguous or matrix.flags.f_contiguous):
            matrix = np.ascontiguousarray(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(f"expected a (rows, {self.n_features}) matrix, got shape {matrix.shape}")
        out = np.zeros(matrix.shape[0])
        _raw_scores(
            _ROWS_PER_BLOCK,
            matrix,
            out,
            self.tree_node_start,
            self.tree_leaf_start,
            self.node_feature,
            self.node_threshold,
            self.node_default_left,
            self.node_missing,
            self.node_categorical,
            self.node_bitset_start,
            self.bitset,
            self.node_left,
            self.node_right,
            self.leaf_value,
            _ZERO_THRESHOLD,
        )
        return out

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) both kernels, so that no request pays for it."""
        probe = np.zeros((1, self.n_features))
        self.contributions(probe)
        self.contributions(np.zeros((_ROWS_PER_BLOCK + 1, self.n_features)))


@numba.njit(nogil=True, cache=True)
def _contributions_serial(  # noqa: PLR0913 - flat arrays are how numba takes a structure
    rows_per_block: int,
    matrix: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_leaf_start: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_categorical: np.ndarray,
    node_bitset_start: np.ndarray,
    bitset: np.ndarray,
    step_target: np.ndarray,
    step_parent: np.ndarray,
    step_left: np.ndarray,
    step_slot: np.ndarray,
    leaf_column_start: np.ndarray,
    leaf_table_offset: np.ndarray,
    leaf_value: np.ndarray,
    column_feature: np.ndarray,
    column_zero_fraction: np.ndarray,
    table: np.ndarray,
    shapley_weights: np.ndarray,
    zero_threshold: float,
) -> None:
    n_blocks = (matrix.shape[0] + rows_per_block - 1) // rows_per_block
    for block in range(n_blocks):
        _explain_block(
            block, rows_per_block, matrix, out, tree_node_start, tree_leaf_start, node_feature,
            node_threshold, node_default_left, node_missing, node_categorical, node_bitset_start, bitset,
            step_target, step_parent, step_left, step_slot, leaf_column_start, leaf_table_offset,
            leaf_value, column_feature, column_zero_fraction, table, shapley_weights, zero_threshold,
        )  # fmt: skip


@numba.njit(parallel=True, nogil=True, cache=True)
def _contributions_parallel(  # noqa: PLR0913 - flat arrays are how numba takes a structure
    rows_per_block: int,
    matrix: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_leaf_start: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_categorical: np.ndarray,
    node_bitset_start: np.ndarray,
    bitset: np.ndarray,
    step_target: np.ndarray,
    step_parent: np.ndarray,
    step_left: np.ndarray,
    step_slot: np.ndarray,
    leaf_column_start: np.ndarray,
    leaf_table_offset: np.ndarray,
    leaf_value: np.ndarray,
    column_feature: np.ndarray,
    column_zero_fraction: np.ndarray,
    table: np.ndarray,
    shapley_weights: np.ndarray,
    zero_threshold: float,
) -> None:
    n_blocks = (matrix.shape[0] + rows_per_block - 1) // rows_per_block
    for block in numba.prange(n_blocks):
        _explain_block(
            block, rows_per_block, matrix, out, tree_node_start, tree_leaf_start, node_feature,
            node_threshold, node_default_left, node_missing, node_categorical, node_bitset_start, bitset,
            step_target, step_parent, step_left, step_slot, leaf_column_start, leaf_table_offset,
            leaf_value, column_feature, column_zero_fraction, table, shapley_weights, zero_threshold,
        )  # fmt: skip


@numba.njit(nogil=True, cache=True)
def _explain_block(  # noqa: PLR0913 - flat arrays are how numba takes a structure
    block: int,
    rows_per_block: int,
    matrix: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_leaf_start: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_categorical: np.ndarray,
    node_bitset_start: np.ndarray,
    bitset: np.ndarray,
    step_target: np.ndarray,
    step_parent: np.ndarray,
    step_left: np.ndarray,
    step_slot: np.ndarray,
    leaf_column_start: np.ndarray,
    leaf_table_offset: np.ndarray,
    leaf_value: np.ndarray,
    column_feature: np.ndarray,
    column_zero_fraction: np.ndarray,
    table: np.ndarray,
    shapley_weights: np.ndarray,
    zero_threshold: float,
) -> None:
    """One block of rows through every tree; the rows' values do not depend on the other blocks."""
    n_rows = matrix.shape[0]
    n_trees = len(tree_node_start) - 1
    widest = shapley_weights.shape[0] - 1
    largest, most_nodes = 1, 1
    for t in range(n_trees):
        nodes = tree_node_start[t + 1] - tree_node_start[t]
        largest = max(largest, nodes + tree_leaf_start[t + 1] - tree_leaf_start[t])
        most_nodes = max(most_nodes, nodes)
    goes_left = np.empty(most_nodes, dtype=np.uint8)
    # Per position of one tree (nodes, then leaves): the path slots where the row disagrees.
    disagrees = np.empty(largest, dtype=np.int64)
    poly = np.empty(widest + 2)
    quotient = np.empty(widest + 1)
    slots = np.empty(2 * widest + 2, dtype=np.int64)
    by_slot = np.empty(max(widest, 1))
    # Tree by tree over a block of rows, so that one tree's tables stay in cache.
    for t in range(n_trees):
        first_node = tree_node_start[t]
        n_nodes = tree_node_start[t + 1] - first_node
        first_step = first_node + tree_leaf_start[t]
        n_positions = n_nodes + tree_leaf_start[t + 1] - tree_leaf_start[t]
        for i in range(block * rows_per_block, min(n_rows, (block + 1) * rows_per_block)):
            _decide(
                matrix[i],
                first_node,
                first_node + n_nodes,
                node_feature,
                node_threshold,
                node_default_left,
                node_missing,
                node_categorical,
                node_bitset_start,
                bitset,
                zero_threshold,
                goes_left,
            )
            disagrees[0] = 0
            for step in range(first_step + 1, first_step + n_positions):
                parent = step_parent[step]
                off_path = np.int64(goes_left[parent] ^ step_left[step])
                disagrees[step_target[step]] = disagrees[parent] | (off_path << step_slot[step])
            for local_leaf in range(tree_leaf_start[t + 1] - tree_leaf_start[t]):
                leaf = tree_leaf_start[t] + local_leaf
                first_column = leaf_column_start[leaf]
                width = leaf_column_start[leaf + 1] - first_column
                pattern = ~disagrees[n_nodes + local_leaf] & ((np.int64(1) << width) - 1)
                offset = leaf_table_offset[leaf]
                if offset >= 0:
                    base = offset + pattern * width
                    for s in range(width):
                        out[i, column_feature[first_column + s]] += table[base + s]
                else:
                    # The formula the tables were filled with: the same bits as a look-up would give.
                    _leaf_contributions(
                        pattern, first_column, width, leaf_value[leaf], column_zero_fraction,
                        shapley_weights, poly, quotient, slots, by_slot,
                    )  # fmt: skip
                    for s in range(width):
                        out[i, column_feature[first_column + s]] += by_slot[s]


@numba.njit(inline="always")
def _decide(
    row: np.ndarray,
    first_node: int,
    end_node: int,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_categorical: np.ndarray,
    node_bitset_start: np.ndarray,
    bitset: np.ndarray,
    zero_threshold: float,
    goes_left: np.ndarray,
) -> None:
    """:func:`_goes_left` at every node of one tree, into ``goes_left`` by the node's place in it."""
    for node in range(first_node, end_node):
        goes_left[node - first_node] = _goes_left(
            row[node_feature[node]], node_categorical[node], node_missing[node],
            node_default_left[node], node_threshold[node], bitset, node_bitset_start[node],
            node_bitset_start[node + 1], zero_threshold,
        )  # fmt: skip


@numba.njit(inline="always")
def _goes_left(
    value: float,
    categorical: bool,
    missing: int,
    default_left: bool,
    threshold: float,
    bitset: np.ndarray,
    first_word: int,
    end_word: int,
    zero_threshold: float,
) -> bool:
    """LightGBM's decision at one node (Tree::NumericalDecision, Tree::CategoricalDecision).

    The one copy of the rule, for the contributions and the raw scores alike. It takes the node's
    fields as numbers: with the node arrays as arguments, inlined into :func:`_decide`'s loop,
    explaining 44,000 rows took 9.3 s instead of 6.3 s.
    """
    if categorical:
        # LightGBM truncates to a C int: NaN and anything whose integer part is
        # negative (or beyond int) go right; -0.5 is category 0.
        if np.isnan(value) or value <= -1.0 or value >= _LARGEST_CATEGORY + 1.0:
            return False
        category = int(value)
        word = first_word + (category >> 5)
        if word >= end_word:
            return False
        return bool((bitset[word] >> np.uint32(category & 31)) & np.uint32(1))
    if np.isnan(value):
        if missing == _MISSING_NAN:
            return default_left
        value = 0.0
    if missing == _MISSING_ZERO and -zero_threshold <= value <= zero_threshold:
        return default_left
    return value <= threshold


@numba.njit(parallel=True, nogil=True, cache=True)
def _raw_scores(  # noqa: PLR0913 - flat arrays are how numba takes a structure
    rows_per_block: int,
    matrix: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_leaf_start: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_categorical: np.ndarray,
    node_bitset_start: np.ndarray,
    bitset: np.ndarray,
    node_left: np.ndarray,
    node_right: np.ndarray,
    leaf_value: np.ndarray,
    zero_threshold: float,
) -> None:
    """Each row's leaf values added tree by tree into ``out`` (zeros), rows in blocks on every core."""
    n_rows = matrix.shape[0]
    n_trees = len(tree_node_start) - 1
    n_blocks = (n_rows + rows_per_block - 1) // rows_per_block
    for block in numba.prange(n_blocks):
        # A block of rows through one tree at a time keeps the tree's nodes in cache: 1.9 s against
        # 2.8 s for each row through every tree, on 300,000 rows and 300 trees.
        for t in range(n_trees):
            first_node = tree_node_start[t]
            n_nodes = tree_node_start[t + 1] - first_node
            for i in range(block * rows_per_block, min(n_rows, (block + 1) * rows_per_block)):
                position = 0
                while position < n_nodes:  # a tree of one leaf has no nodes: its leaf is position 0
                    node = first_node + position
                    if _goes_left(
                        matrix[i, node_feature[node]], node_categorical[node], node_missing[node],
                        node_default_left[node], node_threshold[node], bitset, node_bitset_start[node],
                        node_bitset_start[node + 1], zero_threshold,
                    ):  # fmt: skip
                        position = node_left[node]
                    else:
                        position = node_right[node]
                out[i] += leaf_value[tree_leaf_start[t] + position - n_nodes]


@numba.njit(inline="always")
def _leaf_contributions(
    pattern: int,
    first_column: int,
    width: int,
    value: float,
    column_zero_fraction: np.ndarray,
    shapley_weights: np.ndarray,
    poly: np.ndarray,
    quotient: np.ndarray,
    slots: np.ndarray,
    by_slot: np.ndarray,
) -> None:
    """The module docstring's formula: ``by_slot[s]``, the leaf's contribution to its s-th path feature.

    The one formula behind both the tables and the leaves computed per row, so a value does not
    depend on which way it was found. Written without a branch on the pattern's bits (a row's
    pattern is as good as random, and mispredicted branches were most of the time), with the same
    arithmetic as the branching form: adding ``0.0 * poly[k - 1]`` or multiplying
    ``1.0 * poly[k - 1]`` changes no bit (every coefficient is finite and non-negative), nor does
    updating zero coefficients above the degree.
    """
    # poly: coefficients of prod_j (z_j + o_j y). Meanwhile slots[0:degree] collects the agreeing
    # slots and slots[width + 1:][0:width - degree] the others, each written whatever the bit.
    poly[0] = 1.0
    for k in range(1, width + 1):
        poly[k] = 0.0
    degree = 0
    for j in range(width):
        z = column_zero_fraction[first_column + j]
        agrees = (pattern >> j) & 1
        slots[degree] = j
        slots[width + 1 + j - degree] = j
        one = float(agrees)
        for k in range(j + 1, 0, -1):
            poly[k] = poly[k] * z + one * poly[k - 1]
        poly[0] = poly[0] * z
        degree += agrees
    # Where o_i = 0 the quotient is poly / z_i, and (0 - z_i) cancels z_i: one sum serves them all.
    # poly has degree ``degree`` (the agreeing features): the coefficients above it are zero, and
    # leaving them out of the sums below changes no bit of the result, only the work.
    disagreeing = 0.0
    for k in range(min(degree + 1, width)):
        disagreeing += shapley_weights[width, k] * poly[k]
    for c in range(width - degree):
        by_slot[slots[width + 1 + c]] = -(value * disagreeing)
    for h in range(degree):
        column = first_column + slots[h]
        z = column_zero_fraction[column]
        quotient[degree - 1] = poly[degree]
        for k in range(degree - 1, 0, -1):
            quotient[k - 1] = poly[k] - z * quotient[k]
        total = 0.0
        for k in range(degree):
            total += shapley_weights[width, k] * quotient[k]
        by_slot[slots[h]] = value * (1.0 - z) * total


@numba.njit(parallel=True, nogil=True, cache=True)
def _fill_tables(
    leaf_table_offset: np.ndarray,
    leaf_column_start: np.ndarray,
    leaf_value: np.ndarray,
    column_zero_fraction: np.ndarray,
    shapley_weights: np.ndarray,
    table: np.ndarray,
) -> None:
    """Every tabulated leaf's contributions for each of its 2^d patterns (pattern x d + slot)."""
    widest = shapley_weights.shape[0] - 1
    for leaf in numba.prange(len(leaf_table_offset)):
        offset = leaf_table_offset[leaf]
        if offset < 0:
            continue
        first_column = leaf_column_start[leaf]
        width = leaf_column_start[leaf + 1] - first_column
        poly = np.empty(widest + 2)
        quotient = np.empty(widest + 1)
        slots = np.empty(2 * widest + 2, dtype=np.int64)
        by_slot = np.empty(max(widest, 1))
        for pattern in range(1 << width):
            _leaf_contributions(
                pattern, first_column, width, leaf_value[leaf], column_zero_fraction, shapley_weights,
                poly, quotient, slots, by_slot,
            )  # fmt: skip
            base = offset + pattern * width
            for s in range(width):
                table[base + s] = by_slot[s]


def _table_cells(width: int) -> int:
    """Values in the table of a leaf of ``width`` path features: one per slot for each pattern."""
    return int(2**width * width)


def _table_width(widths: list[int], max_features: int, max_bytes: int) -> int:
    """The widest leaves tabulated: at most ``max_features``, and all tables together within ``max_bytes``."""
    counts = np.bincount(np.asarray(widths, dtype=np.int64), minlength=max_features + 1)
    total = 0
    for width in range(min(max_features, len(counts) - 1) + 1):
        total += int(counts[width]) * _table_cells(width) * 8
        if total > max_bytes:
            return width - 1
    return max_features


def _check_model(model: dict[str, Any]) -> None:
    if int(model.get("num_tree_per_iteration", 1)) != 1:
        raise UnsupportedBooster("more than one tree per iteration (multiclass)")
    for info in model["tree_info"]:
        stack = [(info["tree_structure"], 0)]
        while stack:
            node, depth = stack.pop()
            if "split_index" not in node:
                if "leaf_coeff" in node:  # JSON dumps mark linear trees only in their leaves
                    raise UnsupportedBooster(f"tree {info['tree_index']} is a linear tree")
                continue
            if node.get("decision_type") not in ("<=", "=="):
                kind = node.get("decision_type")
                raise UnsupportedBooster(f"tree {info['tree_index']} has a split of unknown kind {kind!r}")
            if depth >= _MAX_PATH_FEATURES:
                # A row's agreement pattern is a bit mask in one 64-bit integer.
                raise UnsupportedBooster(f"tree {info['tree_index']} is deeper than {_MAX_PATH_FEATURES}")
            stack += [(node["left_child"], depth + 1), (node["right_child"], depth + 1)]
        if info.get("is_linear"):
            raise UnsupportedBooster(f"tree {info['tree_index']} is a linear tree")


def _category_bitset(threshold: str) -> np.ndarray:
    """The categories of a ``decision_type "=="`` split (dumped as ``"0||3||7"``) as 32-bit words."""
    categories = np.array([int(c) for c in threshold.split("||")], dtype=np.int64)
    if (categories < 0).any() or (categories > _LARGEST_CATEGORY).any():
        raise UnsupportedBooster(
            f"categorical split with a category outside 0..{_LARGEST_CATEGORY}: {threshold}"
        )
    words = np.zeros(int(categories.max()) // 32 + 1, dtype=np.uint32)
    np.bitwise_or.at(words, categories // 32, (np.uint32(1) << (categories % 32).astype(np.uint32)))
    return words


@dataclass(frozen=True)
class _Leaf:
    value: float
    features: list[int]  # distinct path features, in order of first split
    zero_fraction: np.ndarray  # z per distinct feature


@dataclass(frozen=True)
class _Tree:
    nodes: list[dict[str, Any]]  # internal nodes, numbered in visiting order (parent first)
    slot: list[int]  # per node: the slot of its feature among the path features below it
    leaves: list[_Leaf]
    parent: list[int]  # per position (nodes, then leaves): its parent node, -1 for the root
    left: list[bool]  # per position: whether it is its parent's left child


def _parse_tree(root: dict[str, Any]) -> _Tree:
    """Internal nodes with their feature slots, leaves with their path features, and who is whose child."""
    nodes: list[dict[str, Any]] = []
    slots: list[int] = []
    leaves: list[_Leaf] = []
    node_parent: list[tuple[int, bool]] = []
    leaf_parent: list[tuple[int, bool]] = []
    if "split_index" not in root:
        # A tree that found no split: its lone leaf adds to every row's score and to no feature.
        return _Tree(nodes, slots, [_make_leaf(float(root["leaf_value"]), [], [], nodes)], [-1], [False])
    # (node, (node, goes left) entries from the root, fractions of the parents' rows)
    stack: list[tuple[dict[str, Any], list[tuple[int, bool]], list[float]]] = [(root, [], [])]
    while stack:
        node, entries, fractions = stack.pop()
        parent = entries[-1] if entries else (-1, False)
        if "split_index" not in node:
            leaves.append(_make_leaf(float(node["leaf_value"]), entries, fractions, nodes))
            leaf_parent.append(parent)
            continue
        number = len(nodes)
        nodes.append(node)
        node_parent.append(parent)
        path_features = list(dict.fromkeys(int(nodes[n]["split_feature"]) for n, _ in entries))
        feature = int(node["split_feature"])
        slots.append(path_features.index(feature) if feature in path_features else len(path_features))
        count = float(node["internal_count"])
        for child, left in ((node["right_child"], False), (node["left_child"], True)):
            child_count = float(child["internal_count"] if "split_index" in child else child["leaf_count"])
            stack.append((child, [*entries, (number, left)], [*fractions, child_count / count]))
    positions = node_parent + leaf_parent
    return _Tree(nodes, slots, leaves, [p for p, _ in positions], [left for _, left in positions])


def _make_leaf(
    value: float, entries: list[tuple[int, bool]], fractions: list[float], nodes: list[dict[str, Any]]
) -> _Leaf:
    features: list[int] = []
    zero: list[float] = []
    for (node, _), fraction in zip(entries, fractions, strict=True):
        feature = int(nodes[node]["split_feature"])
        if feature in features:
            slot = features.index(feature)
            zero[slot] = fraction * zero[slot]  # the order LightGBM multiplies repeated splits in
        else:
            features.append(feature)
            zero.append(fraction)
    return _Leaf(value, features, np.array(zero))
