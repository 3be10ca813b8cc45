"""Models over several data sets: coupled model compiler, MULTIFAC, Stratified-NTF."""
