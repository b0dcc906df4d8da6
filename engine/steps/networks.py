"""A run's data on the device and its networks: teacher, student, the AWE
weight network, their optimisers, the forward passes the steps share, and
test accuracy.

Built once per :class:`~engine.steps.run.Run` from its config and dataset; it
holds no progress (that is :class:`~engine.steps.state.RunState`).

A frozen teacher (``teacher_mode="frozen"``: a pretrained torchvision backbone
and a linear head) has its backbone features computed once per run and kept in
the run directory (``RunStore.backbone_features_path``, with the sample keys);
its epochs train the head on them, and its outputs over the training and test
sets are the head applied to them, and so are its outputs in the student's KD
(:meth:`Networks.kd_teacher`: the head on the cached features, mixed as the
images are; docs/ALGORITHM.md), so the backbone never runs again.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Dataset
from ..data.features import linear_head_predictions
from ..method.ambiguity import WeightNet
from ..method.config import RunConfig
from ..method.confident import BOOTSTRAP, NoiseEstimate, beyond_confusion, estimate_from_graph
from ..method.graph import Graph, build_graph
from ..method.training import CachedTeacher, Outputs, forward_all, make_optimizer, recompute_batch_norm
from ..models.features import embed_all
from ..models import build_with_weights, default_pair, parameter_count
from ..rundir.store import RunStore


class Networks:
    """Teacher, student and weight network of one run, with the inputs they read."""

    def __init__(self, config: RunConfig, dataset: Dataset, given: np.ndarray, device: torch.device,
                 external_features: np.ndarray | None = None, external_pred: np.ndarray | None = None,
                 store: RunStore | None = None):
        self.config, self.dataset, self.given, self.device = config, dataset, given, device
        teacher_arch, student_arch = default_pair(dataset.kind, dataset.input_shape)
        self.teacher_arch = config.teacher or teacher_arch
        self.student_arch = config.student or student_arch
        torch.manual_seed(config.seed)
        shape, classes, kind = dataset.input_shape, dataset.num_classes, dataset.kind
        self.teacher = build_with_weights(self.teacher_arch, shape, classes, kind,
                                          _pretrained(config.teacher_weights)).to(device)
        self.student = build_with_weights(self.student_arch, shape, classes, kind,
                                          _pretrained(config.student_weights)).to(device)
        if device.type == "cuda":  # NHWC weights: cuDNN's fast kernels (the batches come channels_last too)
            self.teacher.to(memory_format=torch.channels_last)
            self.student.to(memory_format=torch.channels_last)
        self.frozen = config.teacher_mode == "frozen"
        if self.frozen:
            self.teacher.freeze()
        self.store = store
        self._backbone: tuple[torch.Tensor, torch.Tensor] | None = None  # frozen teacher: (train, test) features
        self.opt_teacher = make_optimizer(self.teacher, config.train)
        self.opt_student = make_optimizer(self.student, config.train)
        self.weight_net = WeightNet(classes)
        self.opt_weight = torch.optim.Adam(self.weight_net.parameters(), lr=config.train.awe_lr)
        # (N, ...): a tensor on the device, or image files decoded batch by batch (engine.data.stream)
        self.x = dataset.train_x if dataset.streamed else torch.as_tensor(dataset.train_x, device=device)
        self.x_test = dataset.test_x if dataset.streamed else torch.as_tensor(dataset.test_x, device=device)
        self.given_t = torch.as_tensor(given, device=device)
        self.external_features, self.external_pred = external_features, external_pred
        self.forget()

    def modules(self) -> dict:
        """The objects a checkpoint saves, by name (:data:`engine.steps.state.MODULES`)."""
        return {name: getattr(self, name) for name in
                ("teacher", "student", "opt_teacher", "opt_student", "weight_net", "opt_weight")}

    def forget(self) -> None:
        """Drop every cached forward pass and graph (after loading weights)."""
        self._student: Outputs | None = None
        self._teacher: Outputs | None = None
        self._teacher_graph: Graph | None = None
        self._teacher_estimate: NoiseEstimate | None = None

    def student_changed(self) -> None:
        self._student = None

    def settle_batch_norm(self, model: torch.nn.Module) -> None:
        """After ``model`` (teacher or student) trained or loaded: its batch-norm statistics recomputed over
        the training images, augmented as in training (``--bn-stats recomputed``,
        :func:`engine.method.training.recompute_batch_norm`); a frozen teacher keeps its pretrained ones."""
        if self.config.train.bn_stats == "recomputed" and not (self.frozen and model is self.teacher):
            recompute_batch_norm(model, self.x, augment_kind=self.dataset.augment, seed=self.config.seed)

    def teacher_changed(self) -> None:
        self._teacher = None

    def set_teacher_outputs(self, outputs: Outputs) -> None:
        self._teacher = outputs

    def teacher_outputs(self) -> Outputs:
        if self._teacher is None:
            self._teacher = self._head_outputs(self.backbone_features()[0]) if self.frozen else \
                forward_all(self.teacher, self.x)
        return self._teacher

    def teacher_outputs_of(self, index: np.ndarray) -> Outputs:
        """The teacher's un-augmented outputs on the training samples ``index``."""
        if self.frozen:
            return self._head_outputs(self.backbone_features()[0][torch.as_tensor(index)])
        return forward_all(self.teacher, self.x[torch.as_tensor(index, device=self.device)])

    def kd_teacher(self, index: np.ndarray | None = None):
        """What the student distils from on training samples ``index`` (all when None): the teacher network,
        or for a frozen teacher its head on the cached backbone features (:class:`CachedTeacher`)."""
        if not self.frozen:
            return self.teacher
        features = self.backbone_features()[0]
        return CachedTeacher(self.teacher.head, features if index is None else features[torch.as_tensor(index)])

    # ------------------------------------------------------------ frozen teacher
    def backbone_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A frozen teacher's backbone features ``(N, D)`` and ``(M, D)`` (train, test), on the device:
        read from the run directory when it holds them for these samples, else computed once and written."""
        if self._backbone is None:
            keys = np.array(self.dataset.keys()).astype(str)
            test_keys = np.array(self.dataset.test_keys or [str(i) for i in range(len(self.dataset.test_x))])
            saved = self.store.backbone_features() if self.store is not None else None
            if saved is not None and np.array_equal(saved["train_keys"], keys) \
                    and np.array_equal(saved["test_keys"], test_keys.astype(str)):
                train, test = saved["train"], saved["test"]
            else:
                train, test = self._embed(self.x), self._embed(self.x_test)
                if self.store is not None:
                    self.store.write_backbone_features(train, test, keys, test_keys)
            self._backbone = (torch.as_tensor(train, device=self.device), torch.as_tensor(test, device=self.device))
        return self._backbone

    def _embed(self, x) -> np.ndarray:
        return embed_all(self.teacher, x, self.device)

    @torch.no_grad()
    def _head_outputs(self, features: torch.Tensor) -> Outputs:
        logits = self.teacher.head(features.to(self.device))
        return Outputs(logits.float().cpu().numpy(), features.float().cpu().numpy())

    def head_model(self) -> torch.nn.Module:
        """The frozen teacher's head as a network of its features (``forward`` -> (logits, features))."""
        return _HeadOnly(self.teacher.head)

    def student_outputs(self) -> Outputs:
        if self._student is None:
            self._student = forward_all(self.student, self.x)
        return self._student

    def graph_features(self) -> np.ndarray:
        """Features of the teacher's graph: the teacher network's, or the ones given (``--teacher-features``)."""
        return self.teacher_outputs().features if self.external_features is None else self.external_features

    def teacher_graph(self) -> Graph:
        if self._teacher_graph is None:
            self._teacher_graph = build_graph(self.graph_features(), self.config.graph)
        return self._teacher_graph

    def teacher_estimate(self) -> NoiseEstimate:
        """The noise estimate on the teacher's graph (:func:`graph_estimate`; stage 0's, computed once),
        confused where its rate does not rise above the features' confusion
        (:func:`engine.method.confident.beyond_confusion`)."""
        if self._teacher_estimate is None:
            estimate = graph_estimate(self.teacher_graph(), self.given, self.dataset.num_classes, self.config)
            self._teacher_estimate = beyond_confusion(estimate, self.given)
        return self._teacher_estimate

    def is_teacher_graph(self, graph: Graph) -> bool:
        return graph is self._teacher_graph

    def stage0_predictions(self) -> np.ndarray:
        """Stage 0's seed classes: the teacher's predictions; with features from elsewhere, the file's
        predictions, else a linear head's out-of-fold predictions on those features (engine.data.features)."""
        if self.external_features is None:
            return self.teacher_outputs().pred
        if self.external_pred is None:  # computed once: deterministic for the run's seed
            self.external_pred = linear_head_predictions(self.external_features, self.given,
                                                         self.dataset.num_classes, self.config.seed)
        return self.external_pred

    def test_accuracy(self, model: torch.nn.Module) -> float | None:
        """Accuracy on the test samples whose label is known (None without any)."""
        true = self.dataset.test_true
        if true is None or not (np.asarray(true) >= 0).any():
            return None
        known = np.asarray(true) >= 0
        if self.frozen and model is self.teacher:
            pred = self._head_outputs(self.backbone_features()[1]).pred
        else:
            pred = forward_all(model, self.x_test).pred
        return float(np.mean(pred[known] == true[known]))

    def parameters(self) -> dict:
        return {"teacher_parameters": parameter_count(self.teacher),
                "student_parameters": parameter_count(self.student)}

    def weights_finite(self) -> bool:
        return all(torch.isfinite(p).all() for m in (self.teacher, self.student) for p in m.parameters())


def _pretrained(weights: str | None) -> str | None:
    """The weights to load: none for ``none`` (a torchvision network from a random start)."""
    return None if weights in (None, "none") else weights


class _HeadOnly(torch.nn.Module):
    """A linear head as a network of features: ``forward(f)`` -> ``(head(f), f)``."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(features), features


def graph_estimate(graph: Graph, given: np.ndarray, num_classes: int, config: RunConfig,
                   rounds: int = BOOTSTRAP) -> NoiseEstimate:
    """:func:`engine.method.confident.estimate_from_graph` on ``graph``'s edges (weights as the propagation's)."""
    weights = np.clip(graph.neighbor_sim.astype(np.float64), 0.0, None) ** config.graph.power
    return estimate_from_graph(graph.neighbor_idx, weights, given, num_classes, config.seed, rounds)
