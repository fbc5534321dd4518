"""One module per command's workflow (build-masks, fit, calibrate, predict, evaluate, export),
each layered arrays → files → folder, plus their settings and the fit → calibrate → predict →
evaluate pipeline that experiments share."""
