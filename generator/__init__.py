"""relapse_risk.generator"""
