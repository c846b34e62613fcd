"""Network dissection of units and their sensitivity to adversarial examples (Xu et al. 2019, Sec. 5,
Eq. 7-8, Figures 7-8; Bau et al. 2017). Pure computation: the ``advtf dissect`` job
(:mod:`advtf.jobs.dissect`) loads the concepts, keeps the resume state and writes the files.

* :mod:`.features`: model inputs from concept images, layer maps, unit masks ``M_k = S_k > T_k``;
* :mod:`.thresholds`: per-unit top-quantile thresholds ``T_k`` (streaming, exact or histogram);
* :mod:`.iou`: IoU counts (Eq. 7), best concepts and detectors;
* :mod:`.sensitivity`: ``v(k)`` under attack (Eq. 8), from an inline attack or a job's stored one;
* :mod:`.significance`: p-values of the most sensitive units' interpretability (Figure 7a).
"""

from advtf.analysis.dissect.features import (RESNET_LAYERS, concept_batches, default_layers, dissection_extractor,
                                             layer_maps, prepare_images, segmentation_masks, unit_chunks,
                                             unit_masks)
from advtf.analysis.dissect.iou import (UNION_RULES, UNIT_SCORES, IoUCounts, category_indices, detector_counts,
                                        iou_pass, unit_table)
from advtf.analysis.dissect.sensitivity import (attack_inputs, attacked_concepts, mask_change, sensitivity_pass,
                                                sensitivity_ranks)
from advtf.analysis.dissect.significance import DEFAULT_NS, sensitivity_p_values
from advtf.analysis.dissect.thresholds import HISTOGRAM_BINS, UnitQuantile, thresholds_pass

__all__ = ["RESNET_LAYERS", "concept_batches", "default_layers", "dissection_extractor", "layer_maps",
           "prepare_images", "segmentation_masks", "unit_chunks", "unit_masks", "UNION_RULES", "UNIT_SCORES",
           "IoUCounts", "category_indices", "detector_counts", "iou_pass", "unit_table", "attack_inputs",
           "attacked_concepts", "mask_change",
           "sensitivity_pass", "sensitivity_ranks", "DEFAULT_NS", "sensitivity_p_values", "HISTOGRAM_BINS",
           "UnitQuantile", "thresholds_pass"]
