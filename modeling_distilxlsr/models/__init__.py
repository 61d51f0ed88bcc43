"""The models: configuration, student backbone, distillation heads, CTC and classification heads (the files that
travel to the Hub, `HUB_CODE_FILES`, import only torch, transformers and each other), the audio format they take,
and the model folder."""
