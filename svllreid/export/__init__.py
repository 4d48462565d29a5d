"""Export of a trained network's image branch for deployment: ONNX and TorchScript files checked
against the network (:mod:`.exporter`), and the files BoxMOT loads (:mod:`.boxmot`)."""
