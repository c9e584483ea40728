from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A compressed child (merge, quantize, distill) is evaluated against its parent.
        from evaluation.services.compression import compression_evaluation_schedule
        from training.hooks import version_created_register

        version_created_register(compression_evaluation_schedule)
