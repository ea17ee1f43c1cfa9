//! Hardware-in-loop suite for Leukoscope (cases arrive with the board issue).
