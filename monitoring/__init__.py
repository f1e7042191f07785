"""relapse_risk.monitoring"""
