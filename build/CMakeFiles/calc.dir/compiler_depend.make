# Empty compiler generated dependencies file for calc.
# This may be replaced when dependencies are built.
