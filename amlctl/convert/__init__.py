"""Converters from other tools' configurations to an amlctl manifest (Batch AI first)."""

from amlctl.convert.batchai import Conversion, convert_batchai
from amlctl.convert.errors import ConvertError
from amlctl.convert.report import Entry, Outcome, Report

__all__ = ["Conversion", "ConvertError", "Entry", "Outcome", "Report", "convert_batchai"]
