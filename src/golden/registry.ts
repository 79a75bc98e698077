/**
 * Every golden stage, in the order `npm run golden` runs them: the image path (preprocessing,
 * encoder, predictor embedding, prompts, segment everything), the memory modules on their recorded inputs, and the
 * video predictor replaying the case's script.
 */
import { amgStage } from './stages_amg.js';
import type { GoldenStage } from './case.js';
import { imageEncoderStage, preprocessStage } from './stages.js';
import { memoryAttentionStage, memoryEncoderStage } from './stages_memory.js';
import { predictorEmbedStage, promptStage } from './stages_prompt.js';
import { videoStage } from './stages_video.js';

export const stages: GoldenStage[] = [
  preprocessStage, imageEncoderStage, predictorEmbedStage, promptStage, amgStage, memoryEncoderStage, memoryAttentionStage, videoStage,
];
