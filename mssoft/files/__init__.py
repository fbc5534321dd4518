"""Input and output: NIfTI volumes, scan discovery for every data layout, and every output
folder's file names, configuration files and guards."""
