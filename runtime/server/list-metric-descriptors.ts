import type { ListMetricDescriptorsRequest__Output } from '../../cri-api/generated/runtime/v1/ListMetricDescriptorsRequest.js';
import type { ListMetricDescriptorsResponse } from '../../cri-api/generated/runtime/v1/ListMetricDescriptorsResponse.js';
import { metricDescriptors } from '../stats/cri-metrics.js';

/** The fixed set of cAdvisor-named series ListPodSandboxMetrics fills; kubelet reads it once. */
export async function ListMetricDescriptors(_req: ListMetricDescriptorsRequest__Output): Promise<ListMetricDescriptorsResponse> {
  return { descriptors: metricDescriptors() };
}
