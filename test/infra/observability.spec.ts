import { expect } from "chai";
import type { Evaluation } from "../../automation/program/evaluate";
import { Alarms, alarmDefinitions, type AlarmsArgs } from "../../infra/observability";
import { ACCOUNT, PAGER_TOPIC_ARN, devInput, evaluateDev, evaluateProd, evaluateSerially, input, list, named, ofType, output, programConfig, statements, variant } from "./fixtures";

const ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm";
const LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Query = Record<string, any>;

describe("infra/observability", () => {
  let dev: Evaluation;
  let prod: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
  });

  describe("logs", () => {
    it("keeps application logs in /ecs/<app>-<env> for logRetentionDays", () => {
      expect(named(prod, LOG_GROUP, "web-prod-logs").inputs).to.include({ name: "/ecs/web-prod", retentionInDays: 90 });
      expect(named(dev, LOG_GROUP, "web-dev-logs").inputs).to.include({ name: "/ecs/web-dev", retentionInDays: 7 });
      expect(prod.outputs.logGroupName.value).to.equal("/ecs/web-prod");
    });

    it("gives every log group a retention", () => {
      for (const group of [...ofType(dev, LOG_GROUP), ...ofType(prod, LOG_GROUP)]) {
        expect(input(group, "retentionInDays"), group.name).to.be.a("number").and.be.above(0);
      }
    });
  });

  describe("alarm topic", () => {
    it("encrypts the topic with its own rotating key", () => {
      const key = named(dev, "aws:kms/key:Key", "web-dev-alarms");
      expect(key.inputs).to.include({ enableKeyRotation: true });
      expect(input(named(dev, "aws:sns/topic:Topic", "web-dev-alarms"), "kmsMasterKeyId")).to.equal(output(key, "arn"));
      expect(named(dev, "aws:kms/alias:Alias", "web-dev-alarms").inputs).to.deep.equal({ name: "alias/web-dev-alarms", targetKeyId: output(key, "keyId") });
    });

    it("lets CloudWatch use the key for this account only, which the AWS-managed SNS key would not", () => {
      const cloudwatch = statements(named(dev, "aws:kms/key:Key", "web-dev-alarms"), "policy").find((s) => JSON.stringify(s.Principal).includes("cloudwatch"));
      expect(list(cloudwatch?.Action)).to.have.members(["kms:Decrypt", "kms:GenerateDataKey*"]);
      expect(cloudwatch?.Condition).to.deep.equal({ StringEquals: { "aws:SourceAccount": ACCOUNT } });
    });

    it("is the stack's alarmTopicArn", () => {
      expect(dev.outputs.alarmTopicArn.value).to.equal(output(named(dev, "aws:sns/topic:Topic", "web-dev-alarms"), "arn"));
    });
  });

  describe("alarms", () => {
    const alarm = (ev: Evaluation, role: string) => named(ev, ALARM, `web-${ev.stack}-${role}`);
    const service = (ev: Evaluation) => ({ ClusterName: ev.outputs.clusterName.value, ServiceName: ev.outputs.serviceName.value });
    const albSuffix = (ev: Evaluation) => output(named(ev, "aws:lb/loadBalancer:LoadBalancer", `web-${ev.stack}-alb`), "arnSuffix");

    it("creates the four alarms, each notifying the topic (and the environment's own topics) when it fires and when it clears", () => {
      const alarms = ofType(prod, ALARM);
      expect(alarms.map((a) => a.name)).to.have.members(["web-prod-cpu-high", "web-prod-http-5xx", "web-prod-unhealthy-hosts", "web-prod-tasks-below-desired"]);
      const topic = prod.outputs.alarmTopicArn.value;
      for (const a of alarms) expect(a.inputs, a.name).to.deep.include({ alarmActions: [topic, PAGER_TOPIC_ARN], okActions: [topic, PAGER_TOPIC_ARN] });
    });

    it("subscribes the environment's email and HTTPS endpoints to the alarm topic, so alarms reach someone", async () => {
      const topic = prod.outputs.alarmTopicArn.value;
      const subs = ofType(prod, "aws:sns/topicSubscription:TopicSubscription");
      expect(subs.map((x) => x.inputs)).to.deep.equal([{ topic, protocol: "email", endpoint: "oncall@example.com" }]);
      const ev = await evaluateSerially(programConfig(variant(devInput, (s) => (s.alarms = { ...s.alarms, notify: [{ https: "https://hooks.example.com/alarms" }] }))));
      expect(ofType(ev, "aws:sns/topicSubscription:TopicSubscription").map((x) => x.inputs)).to.deep.equal([
        { topic: ev.outputs.alarmTopicArn.value, protocol: "https", endpoint: "https://hooks.example.com/alarms", endpointAutoConfirms: false },
      ]);
    });

    it("alarms on service CPU at alarms.cpuHighPercent", () => {
      expect(alarm(dev, "cpu-high").inputs).to.deep.include({ namespace: "AWS/ECS", metricName: "CPUUtilization", statistic: "Average", threshold: 90, dimensions: service(dev) });
      expect(input(alarm(prod, "cpu-high"), "threshold")).to.equal(80);
    });

    it("alarms on load balancer plus target 5xx responses per minute at alarms.http5xxPerMinute", () => {
      const a = alarm(dev, "http-5xx");
      expect(a.inputs).to.include({ threshold: 20, comparisonOperator: "GreaterThanOrEqualToThreshold" });
      const queries = input<Query[]>(a, "metricQueries");
      const metrics = queries.filter((q) => q.metric).map((q) => q.metric);
      expect(metrics.map((m) => m.metricName)).to.have.members(["HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"]);
      for (const m of metrics) expect(m).to.deep.include({ namespace: "AWS/ApplicationELB", stat: "Sum", period: 60, dimensions: { LoadBalancer: albSuffix(dev) } });
      expect(queries.find((q) => q.returnData)?.expression).to.equal("FILL(elb, 0) + FILL(target, 0)");
    });

    it("alarms when any target is unhealthy", () => {
      const tgSuffix = output(named(prod, "aws:lb/targetGroup:TargetGroup", "web-prod-tg"), "arnSuffix");
      expect(alarm(prod, "unhealthy-hosts").inputs).to.deep.include({
        namespace: "AWS/ApplicationELB",
        metricName: "UnHealthyHostCount",
        threshold: 0,
        comparisonOperator: "GreaterThanThreshold",
        dimensions: { LoadBalancer: albSuffix(prod), TargetGroup: tgSuffix },
      });
    });

    it("alarms when fewer tasks run than the service wants", () => {
      const a = alarm(prod, "tasks-below-desired");
      const metrics = input<Query[]>(a, "metricQueries").filter((q) => q.metric).map((q) => q.metric);
      expect(metrics.map((m) => m.metricName)).to.have.members(["RunningTaskCount", "DesiredTaskCount"]);
      for (const m of metrics) expect(m).to.deep.include({ namespace: "ECS/ContainerInsights", dimensions: service(prod) });
      expect(a.inputs).to.include({ threshold: 0, comparisonOperator: "GreaterThanThreshold", treatMissingData: "breaching" });
    });
  });

  describe("helpers and argument checks", () => {
    const args: AlarmsArgs = { topicArn: "arn:t", clusterName: "c", serviceName: "s", loadBalancerArnSuffix: "app/x/1", targetGroupArnSuffix: "targetgroup/x/1" };

    it("defaults the thresholds to 80% CPU and 10 errors a minute", () => {
      const defs = alarmDefinitions(args);
      expect(defs["cpu-high"].threshold).to.equal(80);
      expect(defs["http-5xx"].threshold).to.equal(10);
    });

    it("refuses a CPU threshold above 100%, naming cpuHighPercent", () => {
      expect(() => new Alarms("web-dev", { ...args, cpuHighPercent: 150 })).to.throw(/`cpuHighPercent` is 150/);
    });
  });
});
