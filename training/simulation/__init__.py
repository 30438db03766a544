"""A population of simulated users calibrated on real visits, served through the packaged model."""
