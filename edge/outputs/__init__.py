"""Outputs: sinks that receive every PoseResult (JSONL file, console, ...)."""
