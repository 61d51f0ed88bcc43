"""The models: configuration, student backbone, distillation heads, CTC and classification heads (the three files that
travel to the Hub import only torch, transformers and each other), the audio format they take, and the model folder."""
