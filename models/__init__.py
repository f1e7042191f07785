"""relapse_risk.models"""
