package main
import (
 _ "github.com/spf13/cobra"
 _ "gopkg.in/yaml.v3"
 _ "github.com/jackc/pgx/v5"
 _ "github.com/hashicorp/vault/api"
 _ "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
 _ "github.com/aws/aws-sdk-go-v2/config"
 _ "github.com/slack-go/slack"
 _ "github.com/robfig/cron/v3"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/stretchr/testify/require"
 _ "github.com/cenkalti/backoff/v4"
 _ "github.com/santhosh-tekuri/jsonschema/v5"
 _ "github.com/xdg-go/scram"
)
func main(){}
