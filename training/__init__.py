"""relapse_risk.training"""
