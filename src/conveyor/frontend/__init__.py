"""The V2 front ends over any InferenceService: REST under uvicorn, gRPC, body limits, error mapping.

The replica (server/) and the gateway (gateway/) both serve through them, so requests and errors look the
same from either; nothing here loads ONNX Runtime.
"""
