using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>Picks the silo's membership provider and ports from configuration.</summary>
public static class ClusteringConfiguration
{
    /// <summary>
    /// <c>Clustering:Provider</c> = <c>Localhost</c> (default: development membership; a second silo on the same machine
    /// sets <c>Clustering:PrimarySiloPort</c>) or <c>Redis</c> (<c>Clustering:Redis:ConnectionString</c>). Ports come from
    /// <c>Silo:SiloPort</c> (11111) and <c>Silo:GatewayPort</c> (30000); <c>Silo:AdvertisedIP</c> is the pod IP in
    /// Kubernetes; <c>Orleans:ClusterId</c>/<c>ServiceId</c> name the cluster (both <c>dev</c> unless set, as for the cluster
    /// client); <c>Orleans:Membership</c> binds <c>ClusterMembershipOptions</c> (failure detection).
    /// <c>Kubernetes:Enabled</c> (default false) adds Orleans' Kubernetes hosting: the silo takes its name, address, service and cluster ids from the pod (<c>POD_NAME</c>,
    /// <c>POD_NAMESPACE</c>, <c>POD_IP</c>, <c>ORLEANS_SERVICE_ID</c>, <c>ORLEANS_CLUSTER_ID</c>), and silos whose pods are
    /// gone are declared dead at once instead of after the failure detector's probes
    /// (<c>Kubernetes:DeleteDefunctSiloPods</c> also deletes the pods of silos declared dead).
    /// </summary>
    /// <exception cref="InvalidOperationException">An unknown provider, or Redis without a connection string.</exception>
    public static ISiloBuilder UseClusteringFromConfiguration(this ISiloBuilder silo, IConfiguration configuration)
    {
        // Failure detection (Orleans:Membership:ProbeTimeout, NumMissedProbesLimit, NumVotesForDeathDeclaration, …):
        // how fast a crashed silo's connections are cleaned up; see the README's failure section.
        //
        //
        // Two defaults differ from Orleans', for partitions (README "Network faults"; NetworkFaultTests), each unless set:
        // - EnableIndirectProbes false. When one silo is cut from the rest, every other silo can no more reach it than
        //   the prober can, so each intermediary is itself "degraded" and its verdict is discarded as inconclusive.
        // - MaxProbeTimeout = ProbeTimeout (Orleans: 4×). A vote is suppressed while the suspect's connection has had a
        //   message within MaxProbeTimeout × NumMissedProbesLimit: 60 s by default, so a cut silo outlived a minute.
        // With Orleans' other defaults the cut silo is voted out after about 15 s, and exits about 2 s after it reads so.
        var membership = configuration.GetSection("Orleans:Membership");
        silo.Configure<ClusterMembershipOptions>(o => o.EnableIndirectProbes = false);
        silo.Configure<ClusterMembershipOptions>(membership);
        if (membership["MaxProbeTimeout"] is null)
        {
            silo.Services.PostConfigure<ClusterMembershipOptions>(o => o.MaxProbeTimeout = o.ProbeTimeout);
        }

        // After a silo is declared dead, Orleans' directory holds the ranges it owned for RangeLeaseDuration less the
        // detection window (30 s less 6 s here), so that a silo declared dead while still running (cut off) cannot
        // leave a second activation behind; registrations there wait, and new connections whose grains hash into those
        // ranges (a third of them with three silos) with them. A cut silo that still reaches the membership store
        // learns it was voted out within a probe and exits 2 s later (Orleans' fatal handler), so the sample holds the
        // ranges 12 s from the estimated failure: 6 s after the vote. Orleans:GrainDirectory:RangeLeaseDuration sets it.
        var directory = configuration.GetSection("Orleans:GrainDirectory");
        silo.Configure<GrainDirectoryOptions>(o => o.RangeLeaseDuration = TimeSpan.FromSeconds(12));
        silo.Configure<GrainDirectoryOptions>(directory);

        // With Orleans' default grain directory, a silo leaving (even gracefully) deactivates every grain whose directory
        // entry it held, wherever it runs: about a third of all connection grains in a 3-silo cluster, whose connections
        // then break (measured: shared/reference/orleans-facts.md §4.4 and MultiProcessClusterTests). The distributed
        // directory hands its ranges over instead, so connections on other silos are untouched.
        if (configuration.GetValue("Orleans:DistributedGrainDirectory", true))
        {
#pragma warning disable ORLEANSEXP003 // Experimental in Orleans 10; the alternative breaks live connections.
            silo.AddDistributedGrainDirectory();
#pragma warning restore ORLEANSEXP003
        }

        var kubernetes = configuration.GetValue("Kubernetes:Enabled", false);
        if (kubernetes)
        {
            // Needs the pod's service account with the Role in deploy/k8s/rbac.yaml (pods: get, list, watch, patch).
            silo.UseKubernetesHosting(options => options.Configure(o =>
                o.DeleteDefunctSiloPods = configuration.GetValue("Kubernetes:DeleteDefunctSiloPods", false)));
        }

        // One pair of defaults whatever the provider, the cluster client's too (src/Client): a client given only the
        // provider's settings finds the cluster.
        var serviceId = configuration.GetValue("Orleans:ServiceId", "dev")!;
        var clusterId = configuration.GetValue("Orleans:ClusterId", "dev")!;
        var siloPort = configuration.GetValue("Silo:SiloPort", 11111);
        var gatewayPort = configuration.GetValue("Silo:GatewayPort", 30000);
        var provider = configuration.GetValue("Clustering:Provider", "Localhost")!;
        switch (provider.ToLowerInvariant())
        {
            case "localhost":
                var primary = configuration.GetValue<int?>("Clustering:PrimarySiloPort");
                silo.UseLocalhostClustering(
                    siloPort,
                    gatewayPort,
                    primary is { } port ? new IPEndPoint(IPAddress.Loopback, port) : null,
                    serviceId,
                    clusterId);
                break;
            case "redis":
                var connectionString = configuration["Clustering:Redis:ConnectionString"]
                    ?? throw new InvalidOperationException("Clustering:Provider is Redis but Clustering:Redis:ConnectionString is not set (e.g. redis:6379).");
                silo.UseRedisClustering(connectionString);
                silo.Configure<ClusterOptions>(o => (o.ServiceId, o.ClusterId) = (serviceId, clusterId));
                silo.Configure<EndpointOptions>(o =>
                {
                    o.SiloPort = siloPort;
                    o.GatewayPort = gatewayPort;
                    if (configuration["Silo:AdvertisedIP"] is { Length: > 0 } ip)
                    {
                        o.AdvertisedIPAddress = IPAddress.Parse(ip);
                    }
                    else if (!kubernetes)
                    {
                        // In Kubernetes hosting left unset: the pod's IP is advertised.
                        o.AdvertisedIPAddress = IPAddress.Loopback;
                    }
                    o.SiloListeningEndpoint = new IPEndPoint(IPAddress.Any, siloPort);
                    o.GatewayListeningEndpoint = new IPEndPoint(IPAddress.Any, gatewayPort);
                });
                break;
            default:
                throw new InvalidOperationException($"Clustering:Provider '{provider}' is not known: use Localhost or Redis.");
        }

        return silo;
    }
}
