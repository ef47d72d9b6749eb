"""The QA taxonomy: LLaVA-Video-178K's question types mapped onto the four categories."""
from __future__ import annotations

CATEGORIES: dict[str, tuple[str, ...]] = {
    "perception": ("scene_description", "human_description", "object_description", "count", "binary",
                   "visual_text"),
    "spatio_temporal": ("spatial_relation", "object_direction", "camera_direction", "speed",
                        "attribute_change", "time_order", "temporal_localization"),
    "event_action": ("causal", "fine_grained_action", "non_existent_action"),
    "holistic": ("plot_understanding", "summary"),
}
TYPE_TO_CATEGORY = {t: c for c, types in CATEGORIES.items() for t in types}
FORMATS = ("open_ended", "multiple_choice", "grounding", "description")


def taxonomy_text() -> str:
    """The categories and question types as the QA-writing prompt lists them (generated here,
    so the prompt and the checks in `synth.items` can never disagree)."""
    return "\n".join(f"- {category}: {', '.join(types)}" for category, types in CATEGORIES.items())
LETTERS = "ABCD"


class ItemReason:
    """Why a synthesized QA item was rejected (rows in the `rejects` config)."""

    unparseable = "unparseable"
    missing_field = "missing_field"
    invalid_value = "invalid_value"
    span_out_of_range = "span_out_of_range"
    answer_not_in_options = "answer_not_in_options"
    duplicate_question = "duplicate_question"
    hedge_answer = "hedge_answer"
    answer_leaked_in_question = "answer_leaked_in_question"
    ambiguous_query = "ambiguous_query"  # a grounding query that fits another window as well
    time_in_query = "time_in_query"  # a grounding query or option that says when: it answers itself
