"""relapse_risk.serving"""
