/**
 * Live frame sources for the video predictor's streaming mode (browser only): a playing video
 * element or a webcam stream as an async iterator of VideoFrames.
 *
 *   const vp = new VideoPredictor(model, { frames: videoFrames(video, { signal }), streaming: true });
 *   await vp.addPoints(0, 1, [[x, y]], [1]);      // on the first frame taken
 *   for await (const masks of vp.propagate()) draw(masks);
 *
 * The iterator is pulled: each `next()` waits for the next frame the element presents and
 * captures it, so frames shown while the tracker was busy are skipped (tracking keeps up with
 * playback at whatever rate the GPU allows). Frame indices count the frames taken. The
 * predictor in streaming mode closes each VideoFrame once it has copied it to the GPU.
 */

export interface LiveOptions {
  /** ends the iteration */
  signal?: AbortSignal;
}

type VideoWithCallback = HTMLVideoElement & {
  requestVideoFrameCallback?: (cb: () => void) => number;
  cancelVideoFrameCallback?: (id: number) => void;
};

/** Waits for the element to present a new frame (requestVideoFrameCallback, else the next animation frame). */
function nextPresented(video: VideoWithCallback, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    let id = 0;
    const onAbort = () => {
      if (video.cancelVideoFrameCallback) video.cancelVideoFrameCallback(id);
      else cancelAnimationFrame(id);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    };
    id = video.requestVideoFrameCallback ? video.requestVideoFrameCallback(done) : requestAnimationFrame(done);
  });
}

/**
 * The frames a video element presents, from now until it ends or pauses at its end, or the
 * signal aborts. A paused element yields its current frame once and then waits for playback.
 */
export async function* videoFrames(video: HTMLVideoElement, o: LiveOptions = {}): AsyncGenerator<VideoFrame> {
  if (typeof VideoFrame === 'undefined') throw new Error('videoFrames: this browser has no VideoFrame (WebCodecs)');
  if (video.readyState < 2) {
    await new Promise<void>((resolve, reject) => {
      video.addEventListener('loadeddata', () => resolve(), { once: true });
      video.addEventListener('error', () => reject(new Error('videoFrames: the video cannot be decoded')), { once: true });
    });
  }
  let first = true;
  while (!o.signal?.aborted) {
    if (!first) {
      if (video.ended) return;
      if (!(await nextPresented(video as VideoWithCallback, o.signal))) return;
    }
    first = false;
    const frame = await capture(video, o.signal);
    if (!frame) return;
    yield frame;
  }
}

/**
 * A VideoFrame of the element's current picture. Right after loading (or a seek) an element can
 * report data yet have no picture to copy (the constructor then throws InvalidStateError): wait
 * for one, a few seconds at most.
 */
async function capture(video: HTMLVideoElement, signal?: AbortSignal): Promise<VideoFrame | null> {
  const deadline = performance.now() + 5000;
  for (;;) {
    try {
      return new VideoFrame(video, { timestamp: Math.round(video.currentTime * 1e6) });
    } catch (e) {
      if ((e as DOMException).name !== 'InvalidStateError') throw e;
      if (performance.now() > deadline) throw new Error('videoFrames: the video element has no picture to capture (is it playing?)');
    }
    if (signal?.aborted) return null;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A camera (getUserMedia) or screen stream, played in a hidden video element, as VideoFrames. */
export async function* streamFrames(stream: MediaStream, o: LiveOptions = {}): AsyncGenerator<VideoFrame> {
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  await video.play();
  try {
    yield* videoFrames(video, o);
  } finally {
    video.pause();
    video.srcObject = null;
  }
}
