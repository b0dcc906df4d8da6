"""A run's data on the device and its networks: teacher, student, the AWE
weight network, their optimisers, the forward passes the steps share, and
test accuracy.

Built once per :class:`~engine.steps.run.Run` from its config and dataset; it
holds no progress (that is :class:`~engine.steps.state.RunState`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Dataset
from ..data.features import linear_head_predictions
from ..method.ambiguity import WeightNet
from ..method.config import RunConfig
from ..method.confident import BOOTSTRAP, NoiseEstimate, estimate_from_graph
from ..method.graph import Graph, build_graph
from ..method.training import Outputs, forward_all, make_optimizer
from ..models import build_model, default_pair, parameter_count


class Networks:
    """Teacher, student and weight network of one run, with the inputs they read."""

    def __init__(self, config: RunConfig, dataset: Dataset, given: np.ndarray, device: torch.device,
                 external_features: np.ndarray | None = None, external_pred: np.ndarray | None = None):
        self.config, self.dataset, self.given, self.device = config, dataset, given, device
        teacher_arch, student_arch = default_pair(dataset.kind, dataset.input_shape)
        self.teacher_arch = config.teacher or teacher_arch
        self.student_arch = config.student or student_arch
        torch.manual_seed(config.seed)
        shape, classes, kind = dataset.input_shape, dataset.num_classes, dataset.kind
        self.teacher = build_model(self.teacher_arch, shape, classes, kind).to(device)
        self.student = build_model(self.student_arch, shape, classes, kind).to(device)
        self.opt_teacher = make_optimizer(self.teacher, config.train)
        self.opt_student = make_optimizer(self.student, config.train)
        self.weight_net = WeightNet(classes)
        self.opt_weight = torch.optim.Adam(self.weight_net.parameters(), lr=config.train.awe_lr)
        self.x = torch.as_tensor(dataset.train_x, device=device)  # (N, ...)
        self.x_test = torch.as_tensor(dataset.test_x, device=device)
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

    def teacher_changed(self) -> None:
        self._teacher = None

    def set_teacher_outputs(self, outputs: Outputs) -> None:
        self._teacher = outputs

    def teacher_outputs(self) -> Outputs:
        if self._teacher is None:
            self._teacher = forward_all(self.teacher, self.x)
        return self._teacher

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
        """The noise estimate on the teacher's graph (:func:`graph_estimate`; stage 0's, computed once)."""
        if self._teacher_estimate is None:
            self._teacher_estimate = graph_estimate(self.teacher_graph(), self.given, self.dataset.num_classes,
                                                    self.config)
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
        return float(np.mean(forward_all(model, self.x_test).pred[known] == true[known]))

    def parameters(self) -> dict:
        return {"teacher_parameters": parameter_count(self.teacher),
                "student_parameters": parameter_count(self.student)}

    def weights_finite(self) -> bool:
        return all(torch.isfinite(p).all() for m in (self.teacher, self.student) for p in m.parameters())


def graph_estimate(graph: Graph, given: np.ndarray, num_classes: int, config: RunConfig,
                   rounds: int = BOOTSTRAP) -> NoiseEstimate:
    """:func:`engine.method.confident.estimate_from_graph` on ``graph``'s edges (weights as the propagation's)."""
    weights = np.clip(graph.neighbor_sim.astype(np.float64), 0.0, None) ** config.graph.power
    return estimate_from_graph(graph.neighbor_idx, weights, given, num_classes, config.seed, rounds)
