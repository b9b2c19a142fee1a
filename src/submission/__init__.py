"""The pixelwise CSV: writer, reader, validator, and the prediction run that feeds it."""
