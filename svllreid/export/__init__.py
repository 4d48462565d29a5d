"""Export of a trained network's image branch for deployment: ONNX, OpenVINO and TorchScript files
checked against the network (:mod:`.exporter`, :mod:`.openvino`), INT8 for CPUs (:mod:`.int8`), and the
files BoxMOT loads (:mod:`.boxmot`)."""
