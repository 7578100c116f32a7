"""Figures for Augmented Neural ODE experiments.

Every plotting function takes plain data (numpy arrays, sequences, mappings; torch tensors are
accepted and converted with `.detach().cpu().numpy()`) and returns a `matplotlib.figure.Figure`
built without pyplot, so nothing is shown and no global pyplot state is created. Curves labelled
"NODE...", "ANODE..." or "ResNet..." get fixed colours (`METHOD_COLORS`); figures of an experiment
style each model from its settings instead (`model_styles`: one colour, line style and marker per
model in every figure).
"""

from __future__ import annotations

from .animation import feature_evolution_gif, save_gif, trajectory_gif
from .export import figure_to_png_bytes, save_figure
from .flows import (
    plot_feature_evolution,
    plot_trajectories,
    plot_trajectories_1d,
    plot_trajectories_2d,
    plot_trajectories_3d,
    plot_vector_field_1d,
)
from .histories import plot_accuracy_vs_nfe, plot_histories, plot_nfe_vs_loss
from .maps import plot_input_space_map
from .style import (
    AUGMENTATION_STYLES,
    LABEL_COLORS,
    METHOD_COLORS,
    MODIFIER_LINESTYLES,
    CurveStyle,
    augment_shade,
    method_color,
    method_colors,
    model_style,
    model_styles,
)

__all__ = [
    "AUGMENTATION_STYLES",
    "LABEL_COLORS",
    "METHOD_COLORS",
    "MODIFIER_LINESTYLES",
    "CurveStyle",
    "augment_shade",
    "feature_evolution_gif",
    "figure_to_png_bytes",
    "method_color",
    "method_colors",
    "model_style",
    "model_styles",
    "plot_accuracy_vs_nfe",
    "plot_feature_evolution",
    "plot_histories",
    "plot_input_space_map",
    "plot_nfe_vs_loss",
    "plot_trajectories",
    "plot_trajectories_1d",
    "plot_trajectories_2d",
    "plot_trajectories_3d",
    "plot_vector_field_1d",
    "save_figure",
    "save_gif",
    "trajectory_gif",
]
