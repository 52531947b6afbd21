using System.Diagnostics;
using System.Text.RegularExpressions;
using OrleansProtocol.Gateway.Hosting;

namespace OrleansProtocol.Tests;

/// <summary>The Kubernetes manifests render with kustomize and keep the invariants the silos rely on.</summary>
[Trait("Category", "Fast")]
public sealed class DeployManifestTests
{
    private static string RepositoryRoot()
    {
        var directory = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(directory, "OrleansProtocol.sln")))
        {
            directory = Path.GetDirectoryName(directory.TrimEnd(Path.DirectorySeparatorChar))!;
        }

        return directory;
    }

    private static async Task<string> RenderAsync()
    {
        var start = new ProcessStartInfo("kubectl", ["kustomize", Path.Combine(RepositoryRoot(), "deploy", "k8s")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var kubectl = Process.Start(start)!;
        var output = await kubectl.StandardOutput.ReadToEndAsync();
        var errors = await kubectl.StandardError.ReadToEndAsync();
        await kubectl.WaitForExitAsync();
        Assert.True(kubectl.ExitCode == 0, $"kubectl kustomize failed: {errors}");
        return output;
    }

    [SkippableFact]
    public async Task The_kustomization_renders_with_orleans_labels_downward_api_probes_and_a_long_enough_grace_period()
    {
        Skip.IfNot(File.Exists("/usr/bin/kubectl") || File.Exists("/usr/local/bin/kubectl"), "kubectl is not installed on this machine");
        var yaml = await RenderAsync();
        var silo = Regex.Split(yaml, "^---$", RegexOptions.Multiline).Single(d => d.Contains("kind: Deployment") && d.Contains("name: orleansprotocol\n"));

        // Orleans' service and cluster labels on the pods.
        Assert.Contains("orleans/serviceId: orleansprotocol", silo);
        Assert.Contains("orleans/clusterId: orleansprotocol", silo);

        // Pod name, namespace and IP from the downward API; the IP is what the silo advertises.
        foreach (var (name, field) in new[] { ("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("POD_IP", "status.podIP") })
        {
            Assert.Matches(new Regex($@"name: {name}\s+valueFrom:\s+fieldRef:\s+fieldPath: {Regex.Escape(field)}"), silo);
        }

        Assert.Matches(new Regex(@"name: Silo__AdvertisedIP\s+value: \$\(POD_IP\)"), silo);
        Assert.Matches(new Regex(@"name: Clustering__Provider\s+value: Redis"), silo);

        // The probes hit the endpoints the host serves.
        Assert.Matches(new Regex($@"readinessProbe:\s+.*?path: {Regex.Escape(GatewayHealthCheck.ReadyPath)}", RegexOptions.Singleline), silo);
        Assert.Matches(new Regex($@"livenessProbe:\s+.*?path: {Regex.Escape(GatewayHealthCheck.LivePath)}", RegexOptions.Singleline), silo);

        // Grace period > host shutdown timeout > gateway drain deadline.
        var grace = int.Parse(Regex.Match(silo, @"terminationGracePeriodSeconds: (\d+)").Groups[1].Value);
        var shutdown = int.Parse(Regex.Match(silo, @"name: DOTNET_SHUTDOWNTIMEOUTSECONDS\s+value: ""(\d+)""").Groups[1].Value);
        var drain = TimeSpan.Parse(Regex.Match(silo, @"name: OrleansProtocol__Gateway__DrainTimeout\s+value: ""([\d:]+)""").Groups[1].Value);
        Assert.True(drain.TotalSeconds < shutdown, $"drain {drain} must fit in the host's shutdown timeout {shutdown}s");
        Assert.True(shutdown < grace, $"shutdown timeout {shutdown}s must fit in the grace period {grace}s");

        // A rolling update resets nothing: the pod leaves the endpoints before its listeners close, and the pre-stop
        // wait, the drain and the stop fit in the grace period together.
        var preStop = int.Parse(Regex.Match(silo, @"preStop:\s+exec:\s+command:\s+- sleep\s+- ""?(\d+)""?").Groups[1].Value);
        Assert.True(preStop + shutdown < grace, $"pre-stop {preStop}s plus shutdown {shutdown}s must fit in the grace period {grace}s");

        // A LoadBalancer for the protocol ports only, a disruption budget, and Redis for membership.
        var service = Regex.Split(yaml, "^---$", RegexOptions.Multiline).Single(d => d.Contains("kind: Service") && d.Contains("type: LoadBalancer"));
        Assert.DoesNotContain("11111", service);
        Assert.Contains("port: 7001", service);
        Assert.Contains("kind: PodDisruptionBudget", yaml);
        Assert.Contains("image: redis:7", yaml);
        Assert.Contains("port: 6380", service);
        Assert.Matches(new Regex(@"name: echo-udp\s+port: 7000\s+protocol: UDP"), service);
    }

    [SkippableFact]
    public async Task Kubernetes_hosting_is_switched_on_with_a_service_account_allowed_exactly_what_Orleans_asks_of_pods()
    {
        Skip.IfNot(File.Exists("/usr/bin/kubectl") || File.Exists("/usr/local/bin/kubectl"), "kubectl is not installed on this machine");
        var documents = Regex.Split(await RenderAsync(), "^---$", RegexOptions.Multiline);
        var silo = documents.Single(d => d.Contains("kind: Deployment") && d.Contains("name: orleansprotocol\n"));
        Assert.Matches(new Regex(@"name: Kubernetes__Enabled\s+value: ""true"""), silo);
        Assert.Contains("serviceAccountName: orleansprotocol", silo);

        // The account, its Role (pods: read, watch, label its own; no delete while DeleteDefunctSiloPods is off) and the binding.
        static bool Kind(string document, string kind) => Regex.IsMatch(document, $"^kind: {kind}$", RegexOptions.Multiline);
        var account = documents.Single(d => Kind(d, "ServiceAccount"));
        Assert.Contains("name: orleansprotocol", account);
        Assert.Contains("namespace: orleansprotocol", account);
        var role = documents.Single(d => Kind(d, "Role"));
        Assert.Matches(new Regex(@"resources:\s+- pods\s+verbs:\s+- get\s+- list\s+- watch\s+- patch\s*$"), role.TrimEnd());
        Assert.DoesNotContain("delete", role);
        var binding = documents.Single(d => Kind(d, "RoleBinding"));
        Assert.Matches(new Regex(@"roleRef:\s+apiGroup: rbac.authorization.k8s.io\s+kind: Role\s+name: orleansprotocol-silo"), binding);
        Assert.Matches(new Regex(@"subjects:\s+- kind: ServiceAccount\s+name: orleansprotocol"), binding);
        Assert.DoesNotContain("kind: ClusterRole", string.Concat(documents));
    }
}
