"""Segmentation: one decode feeds scene detection and frame sampling; duration selection."""
from pipeline.segment.config import SegmentConfig, SelectConfig
from pipeline.segment.decode import MediaError
from pipeline.segment.select import SelectStage, select
from pipeline.segment.stages import SegmentResult, SegmentStage, segment_video

__all__ = ["SegmentConfig", "SelectConfig", "MediaError", "SegmentResult", "SegmentStage",
           "SelectStage", "segment_video", "select"]
