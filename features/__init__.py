"""relapse_risk.features"""
