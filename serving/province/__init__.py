"""Scoring a province: one run folder per county, counties distributed with Apache Spark."""
