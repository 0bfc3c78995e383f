require "spec"
require "../src/app"

# Starts a Service on an ephemeral loopback port; yields (client, service, log).
def with_service(env : Hash(String, String) = {} of String => String, &)
  log = IO::Memory.new
  service = CrystalApp::Service.new(CrystalApp::Config.from_env(env), log)
  address = service.bind("127.0.0.1", 0)
  spawn { service.listen }
  Fiber.yield
  client = HTTP::Client.new("127.0.0.1", address.port)
  begin
    yield client, service, log
  ensure
    client.close
    service.drain(1.second)
  end
end

def log_lines(log : IO::Memory) : Array(JSON::Any)
  log.to_s.lines.map { |line| JSON.parse(line) }
end

describe CrystalApp do
  it "answers / and /crystal with service, version, pod and zone from env" do
    env = {"POD_NAME" => "pod-c", "AVAILABILITY_ZONE" => "us-west-2b"}
    with_service(env) do |client|
      {"/", "/crystal"}.each do |path|
        response = client.get(path)
        response.status_code.should eq 200
        response.headers["Content-Type"].should contain "application/json"
        body = JSON.parse(response.body)
        body["service"].should eq "crystal"
        body["version"].should eq "1"
        body["message"].as_s.should contain "Crystal"
        body["message"].as_s.should_not contain "Canary"
        body["pod"].should eq "pod-c"
        body["zone"].should eq "us-west-2b"
      end
    end
  end

  it "falls back to the hostname and an unknown zone" do
    with_service do |client|
      body = JSON.parse(client.get("/").body)
      body["pod"].should eq System.hostname
      body["zone"].should eq "unknown"
    end
  end

  it "marks a non-1 APP_VERSION as canary and honours SERVICE_NAME" do
    with_service({"APP_VERSION" => "2", "SERVICE_NAME" => "crystal-canary"}) do |client|
      body = JSON.parse(client.get("/").body)
      body["version"].should eq "2"
      body["service"].should eq "crystal-canary"
      body["message"].as_s.should contain "Canary"
    end
  end

  it "serves /health and a JSON 404 for unknown paths" do
    with_service do |client|
      health = client.get("/health")
      health.status_code.should eq 200
      JSON.parse(health.body).should eq JSON.parse(%({"status":"ok"}))
      missing = client.get("/nope")
      missing.status_code.should eq 404
      JSON.parse(missing.body)["error"].should eq "not found"
      client.post("/").status_code.should eq 405
    end
  end

  it "logs one JSON line per request with the trace ids" do
    with_service do |client, _, log|
      headers = HTTP::Headers{
        "X-Amzn-Trace-Id" => "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        "traceparent"     => "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      }
      client.get("/crystal?x=1", headers: headers)
      client.get("/missing")
      lines = log_lines(log)
      lines.size.should eq 2
      first = lines[0]
      first["method"].should eq "GET"
      first["path"].should eq "/crystal"
      first["status"].should eq 200
      first["duration_ms"].as_f.should be >= 0.0
      Time::Format::RFC_3339.parse(first["time"].as_s)
      first["trace_id"].should eq "1-5759e988-bd862e3fe1be46a994272793"
      first["traceparent"].should eq "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      lines[1]["status"].should eq 404
      lines[1]["trace_id"].raw.should be_nil
    end
  end

  it "delays / by RESPONSE_DELAY_MS but not /health" do
    with_service({"RESPONSE_DELAY_MS" => "200"}) do |client|
      elapsed = Time.measure { client.get("/health") }
      elapsed.should be < 150.milliseconds
      elapsed = Time.measure { client.get("/").status_code.should eq 200 }
      elapsed.should be >= 190.milliseconds
    end
  end

  it "answers every FAIL_EVERY-th greeting with 503 but never /health" do
    with_service({"FAIL_EVERY" => "2"}) do |client|
      statuses = (1..6).map do |i|
        client.get("/health").status_code.should eq 200
        client.get(i.odd? ? "/" : "/crystal").status_code
      end
      statuses.should eq [200, 503, 200, 503, 200, 503]
    end
    with_service({"FAIL_EVERY" => "1"}) do |client|
      response = client.get("/")
      response.status_code.should eq 503
      JSON.parse(response.body)["error"].should eq "injected failure"
    end
    CrystalApp::Config.from_env({"FAIL_EVERY" => "x"}).fail_every.should eq 0
  end

  it "drains: finishes an in-flight request and stops accepting" do
    log = IO::Memory.new
    service = CrystalApp::Service.new(CrystalApp::Config.from_env({"RESPONSE_DELAY_MS" => "300"}), log)
    port = service.bind("127.0.0.1", 0).port
    spawn { service.listen }
    Fiber.yield
    result = Channel(Int32).new
    spawn { result.send HTTP::Client.get("http://127.0.0.1:#{port}/").status_code }
    sleep 50.milliseconds
    service.drain(5.seconds).should be_true
    result.receive.should eq 200
    expect_raises(Socket::ConnectError) { HTTP::Client.get("http://127.0.0.1:#{port}/health") }
  end

  it "extracts trace ids" do
    CrystalApp.trace_id(HTTP::Headers{"traceparent" => "00-abc-def-01"}).should eq "abc"
    CrystalApp.trace_id(HTTP::Headers{"X-Amzn-Trace-Id" => "Self=1;Root=1-2-3"}).should eq "1-2-3"
    CrystalApp.trace_id(HTTP::Headers.new).should be_nil
  end
end
