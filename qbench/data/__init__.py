"""Reference data shipped with qbench: published scores (zoo_reference.csv) and Atari human/random scores."""
