"""Stage one: dataset readers, detector crops and heatmap sampling into Zarr stores."""
