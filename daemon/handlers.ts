import type { CriHandlers } from '../cri-api/server.js';
import { ImageFsInfo, ImageStatus, ListImages, PullImage, RemoveImage, StreamImages } from '../image-store/index.js';
import {
  ContainerStatus,
  CreateContainer,
  ExecSync,
  ListContainers,
  ListPodSandbox,
  PodSandboxStatus,
  RemoveContainer,
  RemovePodSandbox,
  ReopenContainerLog,
  RunPodSandbox,
  StartContainer,
  StopContainer,
  StopPodSandbox,
  UpdateContainerResources,
  UpdatePodSandboxResources,
  StreamPodSandboxes,
  StreamContainers,
  StreamContainerStats,
  StreamPodSandboxStats,
  StreamPodSandboxMetrics,
  ContainerStats,
  ListContainerStats,
  PodSandboxStats,
  ListPodSandboxStats,
  ListMetricDescriptors,
  ListPodSandboxMetrics,
  GetContainerEvents,
  CheckpointContainer,
  Exec,
  Attach,
  PortForward,
  Version,
  Status,
  RuntimeConfig,
  UpdateRuntimeConfig,
} from '../runtime/index.js';
import type { Services } from './services.js';
import { instrumentHandlers } from './metrics.js';
import { auditHandlers } from './audit.js';

/**
 * Every RPC of CRI v1, bound to the services it needs (the Stream* lists
 * are their List twins in batches). ListMetricDescriptors/ListPodSandboxMetrics serve the
 * cAdvisor-named series runsc's stats allow (runtime/cri-metrics.ts).
 * Every RPC is counted in the metrics; Exec, ExecSync, Attach and
 * PortForward are also written to the audit log.
 */
export function buildHandlers(s: Services): CriHandlers {
  const audited = auditHandlers(bindHandlers(s), s.audit, {
    container: (id) => s.rt.getContainer(id),
    pod: (id) => s.rt.getSandbox(id),
  });
  return instrumentHandlers(audited, s.metrics, (ref) => s.images.resolve(ref)?.size);
}

function bindHandlers(s: Services): CriHandlers {
  return {
    Version: (req) => Version(s.info, req),
    Status: (req) => Status(s.info, req),
    RuntimeConfig: (req) => RuntimeConfig(s.rt, req),
    UpdateRuntimeConfig: (req) => UpdateRuntimeConfig(s.info, req),
    PullImage: (req, ctx) => PullImage(s.images, req, ctx.signal),
    ListImages: (req) => ListImages(s.images, req),
    StreamImages: (req, send) => StreamImages(s.images, req, send),
    ImageStatus: (req) => ImageStatus(s.images, req),
    RemoveImage: (req) => RemoveImage(s.images, req),
    ImageFsInfo: (req) => ImageFsInfo(s.images, req),
    RunPodSandbox: (req, ctx) => RunPodSandbox(s.rt, req, ctx),
    StopPodSandbox: (req, ctx) => StopPodSandbox(s.rt, req, ctx),
    RemovePodSandbox: (req, ctx) => RemovePodSandbox(s.rt, req, ctx),
    PodSandboxStatus: (req, ctx) => PodSandboxStatus(s.rt, req, ctx),
    ListPodSandbox: (req, ctx) => ListPodSandbox(s.rt, req, ctx),
    StreamPodSandboxes: (req, send, ctx) => StreamPodSandboxes(s.rt, req, send, ctx),
    CreateContainer: (req, ctx) => CreateContainer(s.rt, req, ctx),
    StartContainer: (req, ctx) => StartContainer(s.rt, req, ctx),
    StopContainer: (req, ctx) => StopContainer(s.rt, req, ctx),
    RemoveContainer: (req, ctx) => RemoveContainer(s.rt, req, ctx),
    ContainerStatus: (req, ctx) => ContainerStatus(s.rt, req, ctx),
    ListContainers: (req, ctx) => ListContainers(s.rt, req, ctx),
    StreamContainers: (req, send, ctx) => StreamContainers(s.rt, req, send, ctx),
    UpdateContainerResources: (req, ctx) => UpdateContainerResources(s.rt, req, ctx),
    UpdatePodSandboxResources: (req, ctx) => UpdatePodSandboxResources(s.rt, req, ctx),
    ReopenContainerLog: (req, ctx) => ReopenContainerLog(s.rt, req, ctx),
    ExecSync: (req, ctx) => ExecSync(s.rt, req, ctx),
    Exec: (req, ctx) => Exec(s.rt, s.streams, req, ctx),
    Attach: (req, ctx) => Attach(s.rt, s.streams, req, ctx),
    PortForward: (req, ctx) => PortForward(s.rt, s.streams, req, ctx),
    ContainerStats: (req, ctx) => ContainerStats(s.rt, req, ctx),
    ListContainerStats: (req, ctx) => ListContainerStats(s.rt, req, ctx),
    StreamContainerStats: (req, send, ctx) => StreamContainerStats(s.rt, req, send, ctx),
    PodSandboxStats: (req, ctx) => PodSandboxStats(s.rt, req, ctx),
    ListPodSandboxStats: (req, ctx) => ListPodSandboxStats(s.rt, req, ctx),
    StreamPodSandboxStats: (req, send, ctx) => StreamPodSandboxStats(s.rt, req, send, ctx),
    ListMetricDescriptors: (req) => ListMetricDescriptors(req),
    ListPodSandboxMetrics: (req, ctx) => ListPodSandboxMetrics(s.rt, req, ctx),
    StreamPodSandboxMetrics: (req, send, ctx) => StreamPodSandboxMetrics(s.rt, req, send, ctx),
    GetContainerEvents: (req, send, ctx) => GetContainerEvents(s.rt, req, send, ctx),
    CheckpointContainer: (req, ctx) => CheckpointContainer(s.rt, req, ctx),
  };
}
