using System.Globalization;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using OrleansProtocol;
using OrleansProtocol.Samples;

// orleansprotocol: joins the cluster as an Orleans client, with the host's clustering settings
// (--Clustering:Provider=Localhost|Redis, --Silo:GatewayPort, --Clustering:Redis:ConnectionString,
// --Orleans:ServiceId, --Orleans:ClusterId), and acts on live connections by id.
const string Usage = """
    usage: orleansprotocol <command> [arguments] [--setting=value ...]
      list <listener>                       the listener's live connections on every silo
      show <connection-id>                  one connection: addresses, silos, age, bytes, pauses
      send <connection-id> <text> [--frame] [--no-newline]
                                            write text (and a newline), or one frame on a framed listener
      close <connection-id>                 flush, then close
      abort <connection-id>                 reset at once
      announce <room> <text>                "* text" to every member of a chat room
      groups                                every connection group with members, and how many, cluster-wide
      members <group>                       the connection ids in a group
    settings (as the host's): --Clustering:Provider=Localhost|Redis  --Silo:GatewayPort=30000
      --Clustering:Redis:ConnectionString=host:6379  --Orleans:ServiceId=dev  --Orleans:ClusterId=dev
    """;

var positional = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();
var flags = args.Where(a => a.StartsWith("--", StringComparison.Ordinal) && !a.Contains('=', StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
var settings = args.Where(a => a.StartsWith("--", StringComparison.Ordinal) && a.Contains('=', StringComparison.Ordinal)).ToArray();
var arity = new Dictionary<string, int>(StringComparer.Ordinal) { ["list"] = 2, ["show"] = 2, ["send"] = 3, ["close"] = 2, ["abort"] = 2, ["announce"] = 3, ["groups"] = 1, ["members"] = 2 };
if (positional.Length == 0 || !arity.TryGetValue(positional[0], out var count) || positional.Length != count
    || flags.Except(["--frame", "--no-newline"]).Any())
{
    Console.Error.WriteLine(Usage);
    return 2;
}

var builder = Host.CreateApplicationBuilder(settings);
// Only what goes wrong, on standard error: standard output is the command's answer.
builder.Logging.ClearProviders().AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning);
var configuration = builder.Configuration;
builder.UseOrleansClient(client =>
{
    var serviceId = configuration.GetValue("Orleans:ServiceId", "dev")!;
    var clusterId = configuration.GetValue("Orleans:ClusterId", "dev")!;
    switch (configuration.GetValue("Clustering:Provider", "Localhost")!.ToLowerInvariant())
    {
        case "localhost":
            client.UseLocalhostClustering(configuration.GetValue("Silo:GatewayPort", 30000), serviceId, clusterId);
            break;
        case "redis":
            client.UseRedisClustering(configuration["Clustering:Redis:ConnectionString"]
                ?? throw new InvalidOperationException("Clustering:Provider is Redis but Clustering:Redis:ConnectionString is not set."));
            client.Configure<ClusterOptions>(o => (o.ServiceId, o.ClusterId) = (serviceId, clusterId));
            break;
        default:
            throw new InvalidOperationException("Clustering:Provider must be Localhost or Redis.");
    }
});

using var host = builder.Build();
try
{
    await host.StartAsync();
}
catch (Exception ex)
{
    Console.Error.WriteLine($"Could not join the cluster: {ex.Message}");
    return 1;
}

var grains = host.Services.GetRequiredService<IClusterClient>();
try
{
    return positional[0] switch
    {
        "list" => await ListAsync(grains, positional[1]),
        "announce" => await AnnounceAsync(grains, positional[1], positional[2]),
        "groups" => await GroupsAsync(grains),
        "members" => await MembersAsync(grains, positional[1]),
        _ => await OnConnectionAsync(grains, positional[0], positional[1], positional.ElementAtOrDefault(2), flags),
    };
}
finally
{
    await host.StopAsync();
}

static async Task<int> ListAsync(IGrainFactory grains, string listener)
{
    var connections = await grains.GetGrain<IConnectionDirectory>(listener).ListStatus();
    Console.WriteLine($"{connections.Length} connection(s) on listener {listener}");
    if (connections.Length > 0)
    {
        Console.WriteLine("ID\tPEER\tSOCKET SILO\tGRAIN SILO\tAGE\tIN\tOUT\tPAUSED");
    }

    foreach (var c in connections.OrderBy(c => c.Age))
    {
        Console.WriteLine(string.Join('\t', c.Info.ConnectionId, c.Info.RemoteEndPoint, c.Info.GatewaySilo, GrainSilo(c),
            c.Age.ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture), c.BytesReceived, c.BytesSent, Paused(c)));
    }

    return 0;
}

static async Task<int> GroupsAsync(IGrainFactory grains)
{
    var groups = await grains.GetGrain<IConnectionGroupDirectory>(0).List();
    Console.WriteLine($"{groups.Count} group(s)");
    if (groups.Count > 0)
    {
        Console.WriteLine("GROUP\tMEMBERS");
    }

    foreach (var (name, members) in groups.OrderBy(g => g.Key, StringComparer.Ordinal))
    {
        Console.WriteLine($"{name}\t{members}");
    }

    return 0;
}

static async Task<int> MembersAsync(IGrainFactory grains, string group)
{
    var members = await grains.GetGrain<IConnectionGroup>(group).List();
    Console.WriteLine($"{members.Length} member(s) of group {group}");
    foreach (var id in members.Order(StringComparer.Ordinal))
    {
        Console.WriteLine(id);
    }

    return 0;
}

static async Task<int> OnConnectionAsync(IGrainFactory grains, string command, string id, string? text, HashSet<string> flags)
{
    var slash = id.LastIndexOf('/');
    var status = slash > 0 ? (await grains.GetGrain<IConnectionDirectory>(id[..slash]).ListStatus()).FirstOrDefault(c => c.Info.ConnectionId == id) : null;
    if (status is null)
    {
        Console.Error.WriteLine($"No live connection {id} (ids look like listener/0123abcd…; see list).");
        return 1;
    }

    var connection = grains.GetGrain<IProtocolConnection>(GrainId.Create(status.Info.GrainType!, id));
    switch (command)
    {
        case "show":
            var i = status.Info;
            Console.WriteLine($"""
                id           {i.ConnectionId}
                listener     {i.ListenerName}
                peer         {i.RemoteEndPoint}
                local        {i.LocalEndPoint}
                protocol     {i.GrainType}
                framing      {i.Framing.Kind}
                tls          {i.Tls?.Protocol ?? "no"}
                socket silo  {i.GatewaySilo}
                grain silo   {GrainSilo(status)}
                age          {status.Age.ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture)}
                bytes in     {status.BytesReceived}
                bytes out    {status.BytesSent}
                paused       {Paused(status)}
                """);
            break;
        case "send":
            var bytes = Encoding.UTF8.GetBytes(flags.Contains("--frame") || flags.Contains("--no-newline") ? text! : text + "\n");
            await (flags.Contains("--frame") ? connection.SendFrame(bytes) : connection.Send(bytes));
            Console.WriteLine($"sent {bytes.Length} bytes");
            break;
        case "close":
            await connection.Close();
            Console.WriteLine("closing (after what was written is sent)");
            break;
        case "abort":
            await connection.Abort();
            Console.WriteLine("aborted");
            break;
    }

    return 0;
}

static async Task<int> AnnounceAsync(IGrainFactory grains, string room, string text)
{
    var members = await grains.GetGrain<IChatRoomGrain>(room).Announce(text);
    Console.WriteLine($"announced to {members} member(s) of {room}");
    return 0;
}

static string GrainSilo(ConnectionStatus c) => c.Hibernated ? "hibernated" : c.GrainSilo ?? "-";

static string Paused(ConnectionStatus c) =>
    (c.ReadingPaused, c.WritingPaused) switch { (true, true) => "both", (true, false) => "read", (false, true) => "write", _ => "no" };
